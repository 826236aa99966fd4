// Routes a Node process's HTTP(S) traffic through the proxy in HTTPS_PROXY.
//
// Loaded by `mitm-oauth run` with NODE_OPTIONS=--require, for Node releases that
// ignore the proxy variables (Node 20 does, in `fetch` and in the http and https
// modules alike). Every connection, plain or TLS, goes through a CONNECT tunnel:
// mitmproxy sees the origin's scheme, host and port, as it would from any client.
// A Node that routes by itself (NODE_USE_ENV_PROXY=1 on Node 22.21+ and 24.5+) gives
// its global agent a `proxyEnv`: then `fetch` and the agents it routes are left to it,
// and only the agents an app makes itself, which it does not route, are tunnelled here.
"use strict";

const http = require("node:http");
const https = require("node:https");
const net = require("node:net");
const tls = require("node:tls");

const DISPATCHER = Symbol.for("undici.globalDispatcher.1");
// NODE_OPTIONS reaches every Node process below the command, some of which may have dropped
// the proxy variables: those are left as they are.
const proxy = parsed(process.env.HTTPS_PROXY || process.env.https_proxy);
const proxyHost = proxy ? proxy.hostname.replace(/^\[|\]$/g, "") : "";
const proxyPort = proxy ? Number(proxy.port || 80) : 0;

function parsed(url) {
  try {
    return url ? new URL(url) : null;
  } catch {
    return null;
  }
}

// Whether a connection is for Node, or the app, to make as it is: to a Unix socket, to
// the proxy itself (an app that speaks to it by itself), or by an agent Node routes.
function leftAlone(agent, options) {
  const host = String(options.host).replace(/^\[|\]$/g, "");
  return (
    Boolean(options.socketPath) ||
    Boolean(agent.options && agent.options.proxyEnv) ||
    (host === proxyHost && Number(options.port) === proxyPort)
  );
}

// A socket to host:port through the proxy, handed to `callback` once the tunnel is up.
function tunnel(host, port, callback) {
  const done = once(callback);
  const authority = net.isIPv6(host) ? `[${host}]:${port}` : `${host}:${port}`;
  const socket = net.connect(proxyPort, proxyHost);
  let head = Buffer.alloc(0);
  const onData = (chunk) => {
    head = Buffer.concat([head, chunk]);
    const end = head.indexOf("\r\n\r\n");
    if (end === -1) return;
    socket.removeListener("data", onData);
    socket.removeListener("error", done);
    const status = head.subarray(0, head.indexOf("\r\n")).toString("latin1");
    if (!/^HTTP\/1\.[01] 200/.test(status)) {
      socket.destroy();
      return done(new Error(`the proxy refused a tunnel to ${authority}: ${status}`));
    }
    const rest = head.subarray(end + 4);
    if (rest.length) socket.unshift(rest);
    done(null, socket);
  };
  socket.on("data", onData);
  socket.once("error", done);
  socket.write(`CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\n\r\n`);
}

function once(callback) {
  let called = false;
  return (...args) => {
    if (!called) {
      called = true;
      callback(...args);
    }
  };
}

function routeModules() {
  // Patched on the prototypes, so agents an app makes itself are routed too.
  const direct = http.Agent.prototype.createConnection;
  http.Agent.prototype.createConnection = function (options, callback) {
    if (leftAlone(this, options)) return direct.call(this, options, callback);
    tunnel(options.host, options.port, callback);
  };
  const directTls = https.Agent.prototype.createConnection;
  https.Agent.prototype.createConnection = function (options, callback) {
    if (leftAlone(this, options)) return directTls.call(this, options, callback);
    tunnel(options.host, options.port, (error, socket) => {
      if (error) return callback(error);
      callback(null, directTls.call(this, { ...options, socket }));
    });
  };
}

function routeFetch() {
  void globalThis.Headers; // loads Node's bundled undici, which makes its default Agent
  const Agent = globalThis[DISPATCHER] && globalThis[DISPATCHER].constructor;
  if (typeof Agent !== "function") return;
  globalThis[DISPATCHER] = new Agent({
    connect(options, callback) {
      const done = once(callback);
      const port = options.port || (options.protocol === "https:" ? 443 : 80);
      tunnel(options.hostname, port, (error, socket) => {
        if (error || options.protocol !== "https:") return done(error, socket);
        const secure = tls.connect({
          socket,
          servername: net.isIP(options.hostname) ? undefined : options.servername || options.hostname,
          ALPNProtocols: ["http/1.1"],
        });
        secure.once("secureConnect", () => done(null, secure));
        secure.once("error", done);
      });
    },
  });
}

if (proxy && proxy.hostname) {
  const routesItself = Boolean(http.globalAgent.options && http.globalAgent.options.proxyEnv);
  routeModules();
  if (!routesItself) routeFetch();
}
