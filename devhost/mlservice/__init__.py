"""The local Azure ML stand-in's processes: job runners, endpoint routers and scoring workers.

They are started by ``shared.platform.local.LocalPlatform`` with ``python -m`` (the app never
imports devhost) and share their state with it through files (``shared.platform.localstore``).
``devhost.mlservice.component`` plugs the service into devhost's life-cycle.
"""
