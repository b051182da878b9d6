"""Status details that the other end recognises by their text. No grpc
import here: the client's error translation (kueue_client/errors.py) reads
these and must stay cheap to import."""

from __future__ import annotations

# How a client's watching stream (wait, log -f, ls --watch, an attached run)
# ends when the server stops (UNAVAILABLE): at once, not when the server's
# grace time for calls in flight is up.
CLIENT_STREAM_STOPPING = "the kueue server is stopping"
