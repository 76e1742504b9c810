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

import socketio

url, topics = sys.argv[1], sys.argv[2:]
sio = socketio.Client()


def handler_for(topic):
    def handler(data):
        print(f"Received message on {topic}: {data['message']}", flush=True)
    return handler


sio.connect(url, wait_timeout=10)
for topic in topics:
    sio.on(topic, handler_for(topic))
    # The seed emits without waiting; the call waits for the broker's answer, so that
    # `ready` means subscribed.
    print("subscribe", sio.call("subscribe", {"topic": topic}, timeout=10), flush=True)
print("ready", sio.transport(), flush=True)

for line in sys.stdin:
    words = line.split(maxsplit=2)
    if words[0] == "publish":
        answer = sio.call("publish", {"topic": words[1], "message": words[2].rstrip("\n")}, timeout=10)
        print("published", answer, flush=True)
    elif words[0] == "unsubscribe":
        print("unsubscribed", sio.call("unsubscribe", {"topic": words[1]}, timeout=10), flush=True)
    elif words[0] == "quit":
        break
sio.disconnect()
print("bye", flush=True)
