"""kueue_worker: runs the jobs the server assigns, on this machine.

Modules: main (entry point), connection (the stream to the server), worker
(messages to and from processes), attempts (pure attempt state), runner (job
processes), sysinfo (machine facts), identity (stable worker id).
"""
