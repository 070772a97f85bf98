"""The same rounds on Flower's deployment runtime: one SuperNode per hospital.

- :mod:`.server_app` / :mod:`.client_app`: the Flower app (``app/pyproject.toml`` names them);
  a round is ours: DP training and the per-client accountant, then the run's protection mode
  driven by the same objects as ``secagg simulate`` (:mod:`secagg.protection`, the masking
  state machines and their wire format), carried in Flower messages (:mod:`.wire`) by a
  short-polling transport with phase deadlines (:mod:`.exchange`);
- :mod:`.node`: a hospital's side (sans-I/O), which obeys the hospital's own
  :mod:`.policy` (privacy floor, identity, data, trusted contract and chain) and keeps what it
  spent on its disk (:mod:`.budget`); :mod:`.worker`: the long-lived ClientApp process beside
  each SuperNode that keeps the node's secrets in memory;
- :mod:`.keys`: key material files; :mod:`.deploy`: a local federation (``secagg deploy``).

Importing this package does not import Flower; its submodules that need it do.
"""
