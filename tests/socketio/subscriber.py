"""The Flask-SocketIO labsheet's subscriber logic, against the broker: python-socketio's
client connects (long-polling first, then the upgrade to a WebSocket, as it does by
default), emits `subscribe` for each topic and handles the event named after it.

    python3 subscriber.py URL TOPIC [TOPIC...]

Prints `ready <transport>` once connected and subscribed, then one line per message,
as the seed's handler does. Reads commands on stdin, one per line:
`publish TOPIC MESSAGE` (emits `publish`, prints the acknowledgement),
`unsubscribe TOPIC`, `quit`.
"""
import sys
import threading

import socketio

url, topics = sys.argv[1], sys.argv[2:]
sio = socketio.Client()
printing = threading.Lock()


def say(*words):
    """Prints one line whole. The handlers run on python-socketio's own threads, beside the
    main one, and `print` writes a line's words, spaces and newline one by one, so two
    threads printing at once could mix their lines (a `published` line cut in two by a
    message's, which the test then never sees)."""
    line = " ".join(str(word) for word in words) + "\n"
    with printing:
        sys.stdout.write(line)
        sys.stdout.flush()


def handler_for(topic):
    def handler(data):
        say(f"Received message on {topic}: {data['message']}")
    return handler


sio.connect(url, wait_timeout=10)
for topic in topics:
    sio.on(topic, handler_for(topic))
    # The seed emits without waiting; the call waits for the broker's answer, so that
    # `ready` means subscribed.
    say("subscribe", sio.call("subscribe", {"topic": topic}, timeout=10))
say("ready", sio.transport())

for line in sys.stdin:
    words = line.split(maxsplit=2)
    if words[0] == "publish":
        answer = sio.call("publish", {"topic": words[1], "message": words[2].rstrip("\n")}, timeout=10)
        say("published", answer)
    elif words[0] == "unsubscribe":
        say("unsubscribed", sio.call("unsubscribe", {"topic": words[1]}, timeout=10))
    elif words[0] == "quit":
        break
sio.disconnect()
say("bye")
