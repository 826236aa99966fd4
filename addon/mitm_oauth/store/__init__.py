"""Tokens shared between mitmdump processes: on one machine (SQLite) or a fleet (Redis).

`spec` parses `oauth_store`; `keys` and `sealing` make a credential set's store key and
encrypt what is stored; `sqlite` and `redis` are the stores; `shared` puts a store in
front of the token endpoint, with a lock so that one process fetches for all.
"""
