"""The broker's WebSocket against an independent client, websocket-client (PyPI): the
handshake, masked frames (the library masks every frame it sends), a fragmented message,
ping and pong, the close handshake, and the size limit. Prints one `ok <check>` line per
check; any failure raises and exits non-zero.

    python3 ws_client.py ws://127.0.0.1:8080/ws <max_line_bytes>
"""
import sys

import websocket
from websocket import ABNF

url, max_line = sys.argv[1], int(sys.argv[2])


def connect():
    ws = websocket.create_connection(url, timeout=10)
    return ws


def text(ws):
    opcode, data = ws.recv_data(control_frame=False)
    assert opcode == ABNF.OPCODE_TEXT, opcode
    return data.decode()


ws = connect()
ws.send("SUBSCRIBE weather py1")
ws.send("PING ready")
assert text(ws) == "PONG ready"
print("ok handshake and a command per text frame")

# A message in three pieces, with a ping between them: one command.
ws.send_frame(ABNF.create_frame("PUBLISH weather frag", ABNF.OPCODE_TEXT, fin=0))
ws.ping("between")
ws.send_frame(ABNF.create_frame("mented mess", ABNF.OPCODE_CONT, fin=0))
ws.send_frame(ABNF.create_frame("age py1", ABNF.OPCODE_CONT, fin=1))
frame = ws.recv_frame()
assert frame.opcode == ABNF.OPCODE_PONG and frame.data == b"between", frame
print("ok ping answered with the same bytes, between fragments")
line = text(ws)
assert line.startswith("DELIVER weather fragmented message py1 "), line
print("ok fragmented message delivered whole")

# Waiting for a delivery published by someone else (the test publishes over TCP).
print("ready", flush=True)
line = text(ws)
assert line.startswith("DELIVER weather from tcp pubtcp "), line
print("ok delivery from a TCP publisher")

# The close handshake: our close frame is answered with the same code.
ws.send_close(websocket.STATUS_NORMAL, b"done")
frame = ws.recv_frame()
assert frame.opcode == ABNF.OPCODE_CLOSE, frame
code = int.from_bytes(frame.data[:2], "big")
assert code == 1000, code
ws.shutdown()
print("ok close handshake, code 1000 echoed")

# A message over the limit: closed with 1009.
ws = connect()
ws.send("x" * (max_line + 1))
frame = ws.recv_frame()
assert frame.opcode == ABNF.OPCODE_CLOSE, frame
code = int.from_bytes(frame.data[:2], "big")
assert code == 1009, code
ws.shutdown()
print("ok too big closed with 1009")

# QUIT: BYE, then the server closes with 1000.
ws = connect()
ws.send("QUIT")
assert text(ws) == "BYE"
frame = ws.recv_frame()
assert frame.opcode == ABNF.OPCODE_CLOSE and int.from_bytes(frame.data[:2], "big") == 1000
ws.shutdown()
print("ok QUIT closes with 1000")
