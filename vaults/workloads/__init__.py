"""Sources that are not directories (SPEC 3.13): what a worker runs to read and restore them.

Nothing here imports Django: the job kinds (vaults/jobs/kinds/) pass the settings in.
"""
