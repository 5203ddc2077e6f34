"""The Temporal backend: a Temporal server (the dev server by default) keeps every run's event
history; worker processes run the steps as activities.

Modules: ``server`` (the dev server and connection probes), ``workflows`` (workflow, activity,
retry mapping), ``payloads`` (external storage for payloads too large for a Temporal message),
``worker`` (worker process entry), ``client`` (harness client and state view), ``backend``
(deployment and registration).
"""
