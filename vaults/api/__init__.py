"""The vaults app's endpoints of SPEC section 5 (routes: ``vaults/api_urls.py``):

- ``vault``: vaults, their immutability, lock, soft delete and Resource Guard
- ``items``: protected items and their recovery points
- ``common``: what the vault-scoped endpoints share (and the policies app's use)

The jobs endpoints are ``vaults/jobs/api.py``.
"""
