"""kueue_server: the queue, its durable state, and the scheduler.

Where things are:
  model.py          job and worker records, resource shapes, states
  pending_queue.py  pending jobs grouped by resource shape (dispatch cost independent of queue length)
  scheduler.py      the pure scheduling core: events in, effects out, no I/O
  store.py          SQLite (WAL) durable copy, written by one thread with group commit
  output_files.py   captured stdout/stderr as capped, append-only segment files
  convert.py        records <-> protobuf
  app.py            wires core, store and services on one event loop
  *_service.py      the gRPC servicers
  main.py           the kueue_server program
"""
