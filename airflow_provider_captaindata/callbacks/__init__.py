"""Receiving v4 async results: Captain Data POSTs each result page to a callback URL.

* ``tokens``: the self-authenticating callback URL of a launch (HMAC, no shared state);
* ``storage``: one file per page under ``{callback_storage}/{launch_key}/{run_uid}/``;
* ``app``: the receiver (Starlette), standalone (``cli``) or in the Airflow 3 API server
  (``plugin``);
* ``webhooks``: v3 run webhooks (created / succeeded / failed) at ``/webhooks/v3/{name}/{token}``,
  stored under ``{callback_storage}/webhooks/v3/{name}/`` for ``CaptainDataRunFinishedTrigger``;
* ``reconcile``: after a run, compare the API's delivery records with the stored pages,
  replay what is missing and read every row exactly once.

Nothing heavy is imported here: the plugin module is loaded by every Airflow process.
"""

from __future__ import annotations
