// A certified OpenID provider (panva/oidc-provider) on loopback, for the interop tests.
//
// Usage: node server.mjs CONFIG.json
// CONFIG: {clients: [...client metadata], tls: {cert, key, clientCa} (PEM file paths),
//          clockOffsetSeconds?: number, dpopNonce?: boolean (DPoP proofs must carry its nonce)}
// Listens on two ephemeral ports, both HTTPS: "mtls" asks for a client certificate
// (verified against clientCa when one is shown), "plain" does not. Prints one JSON line
// {"issuer", "ports": {"mtls", "plain"}} when ready, then one JSON line per token
// request outcome: {"event": "grant.success" | "grant.error", "client", "error",
// "error_description", "detail"} (detail is the provider's reason, never sent to clients).
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import * as https from 'node:https';
import { once } from 'node:events';
import { exportJWK, generateKeyPair } from 'jose';
import Provider from 'oidc-provider';

const config = JSON.parse(readFileSync(process.argv[2], 'utf8'));

if (config.clockOffsetSeconds) {
  // This provider's clock runs ahead: what a proxy with a slow clock looks like to it.
  const offset = config.clockOffsetSeconds * 1000;
  const RealDate = Date;
  globalThis.Date = class extends RealDate {
    constructor(...args) {
      if (args.length === 0) super(RealDate.now() + offset);
      else super(...args);
    }

    static now() { return RealDate.now() + offset; }
  };
}

const tls = {
  cert: readFileSync(config.tls.cert),
  key: readFileSync(config.tls.key),
};
const mtls = https.createServer({
  ...tls, requestCert: true, rejectUnauthorized: false, ca: readFileSync(config.tls.clientCa),
});
const plain = https.createServer(tls);
mtls.listen(0, '127.0.0.1');
plain.listen(0, '127.0.0.1');
await Promise.all([once(mtls, 'listening'), once(plain, 'listening')]);

const issuer = `https://127.0.0.1:${mtls.address().port}`;
const { privateKey } = await generateKeyPair('RS256', { extractable: true });
const signingKey = { ...(await exportJWK(privateKey)), kid: 'issuer-key', alg: 'RS256', use: 'sig' };
const API = 'urn:interop:api';

const provider = new Provider(issuer, {
  clients: config.clients,
  ttl: { ClientCredentials: 300 },
  jwks: { keys: [signingKey] },
  clientAuthMethods: [
    'client_secret_basic', 'client_secret_post', 'client_secret_jwt', 'private_key_jwt',
    'tls_client_auth', 'self_signed_tls_client_auth',
  ],
  enabledJWA: {
    clientAuthSigningAlgValues: ['HS256', 'HS384', 'HS512', 'RS256', 'PS256', 'ES256'],
    dPoPSigningAlgValues: ['ES256', 'RS256', 'PS256'],
  },
  features: {
    devInteractions: { enabled: false },
    dPoP: {
      enabled: true,
      nonceSecret: randomBytes(32),
      requireNonce: () => Boolean(config.dpopNonce),
    },
    clientCredentials: { enabled: true },
    introspection: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => API,
      useGrantedResource: () => true,
      getResourceServerInfo: () => ({
        scope: 'read write', audience: API, accessTokenFormat: 'jwt', accessTokenTTL: 300,
        jwt: { sign: { alg: 'RS256' } },
      }),
    },
    mTLS: {
      enabled: true,
      tlsClientAuth: true,
      selfSignedTlsClientAuth: true,
      getCertificate: (ctx) => ctx.socket.getPeerX509Certificate?.(),
      certificateAuthorized: (ctx) => ctx.socket.authorized,
      certificateSubjectMatches: (ctx, property, expected) => property === 'tls_client_auth_subject_dn'
        && ctx.socket.getPeerX509Certificate()?.subject === expected,
    },
  },
});

function report(event, ctx, err) {
  console.log(JSON.stringify({
    event,
    client: ctx.oidc?.client?.clientId ?? null,
    error: err?.error ?? null,
    error_description: err?.error_description ?? null,
    detail: err?.error_detail ?? err?.cause?.message ?? null,
  }));
}
provider.on('grant.success', (ctx) => report('grant.success', ctx));
provider.on('grant.error', (ctx, err) => report('grant.error', ctx, err));
provider.on('server_error', (ctx, err) => report('server_error', ctx, { error: 'server_error', error_detail: err.message }));

const callback = provider.callback();
mtls.on('request', callback);
plain.on('request', callback);
console.log(JSON.stringify({ issuer, ports: { mtls: mtls.address().port, plain: plain.address().port } }));

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => process.exit(0));
}
