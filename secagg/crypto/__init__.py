"""Cryptographic primitives of secure aggregation, and nothing else.

Each module wraps one primitive with safe defaults; protocol logic (who derives which key for
what, which context binds it) lives in :mod:`secagg.masking`.

- :mod:`.agreement`: X25519 key pairs and agreement
- :mod:`.kdf`: HKDF-SHA256 with unambiguous context encoding
- :mod:`.aead`: AES-GCM with associated data (nonce prepended)
- :mod:`.prg`: AES-CTR mask expansion into modular integer vectors, in place
- :mod:`.shamir`: Shamir secret sharing, limb by limb over GF(2^31 - 1)
"""
