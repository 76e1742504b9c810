"""Two copies of the Go WebSocket tutorial's test page, as websocket-client: each opens
ws://HOST/ws and sends {"email": ..., "content": ...} as a text frame, and expects every
message broadcast, as the same JSON object, to every page, its sender included.

    python3 go_page.py ws://HOST/ws

Prints each frame each page gets (`A <frame>`, `B <frame>`), then `waiting`, then the
frame each gets after a line arrives on stdin (one published by someone else).
"""
import json
import sys

import websocket

url = sys.argv[1]
pages = {name: websocket.create_connection(url, timeout=10) for name in "AB"}


def everyone_reads():
    for name, page in pages.items():
        print(name, page.recv(), flush=True)


for name in "AB":
    pages[name].send(json.dumps({"email": f"{name.lower()}@example.com", "content": f"hello from {name}"}))
    everyone_reads()
print("waiting", flush=True)
sys.stdin.readline()
everyone_reads()
