"""The vault pages, one module per blade of the vault page (``vaults/blades.py`` lists them):

- ``vault``: the vault list, creating a vault, the vault page itself, and the Properties
  blade's actions (job alerts, storage lock check, deleting the vault)
- ``immutability``: the Immutable vault blade
- ``security``: the Security settings blade (soft delete)
- ``mua``: the Multi-user authorization blade
- ``items``: the Backup items blade: items, their recovery points, browsing a point

The Backup policies blade is the policies app's (``policies/views.py``); the Jobs blade
links to the jobs pages (``vaults/jobs/views.py``). Routes: ``vaults/urls.py``.
"""
