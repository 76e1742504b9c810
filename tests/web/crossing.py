"""Messages crossing dialects, with the clients students bring: websocket-client (PyPI)
stands in for the browser, kn-sock's own PubSubClient (PyPI kn-sock 0.3.0) is the JSON
client, and the socket tutorial's ticker sends its datagram exactly as it does. Prints one
`ok <check>` line per check; any failure raises and exits non-zero.

    python3 crossing.py ws://127.0.0.1:8080/ws <tcp_port> <udp_port>
"""
import socket
import sys

import websocket
from kn_sock import PubSubClient

url, tcp_port, udp_port = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])


def text(ws):
    opcode, data = ws.recv_data(control_frame=False)
    assert opcode == websocket.ABNF.OPCODE_TEXT, opcode
    return data.decode()


ws = websocket.create_connection(url, timeout=10)
ws.send("SUBSCRIBE udp browser1")
ws.send("SUBSCRIBE news browser1")
ws.send("PING ready")
assert text(ws) == "PONG ready"

# The UDP tutorial's ticker, one tick: a datagram that is not a command.
ticker = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
ticker.sendto("Event at Mon Dec  1 10:30:00 2026".encode(), ("127.0.0.1", udp_port))
line = text(ws)
assert line.startswith("DELIVER udp Event at Mon Dec  1 10:30:00 2026 udp:127.0.0.1:"), line
print("ok a UDP datagram reaches a WebSocket subscriber", flush=True)

# kn-sock publishes: the WebSocket subscriber gets a DELIVER line.
client = PubSubClient("127.0.0.1", tcp_port)
client.publish("news", "hello from kn-sock")
line = text(ws)
assert line.startswith("DELIVER news hello from kn-sock json:127.0.0.1:"), line
print("ok a kn-sock publish reaches a WebSocket subscriber", flush=True)

# And back: the WebSocket publishes, kn-sock receives it as JSON. kn-sock's client has
# no PING, so its own message to itself proves its subscription is in place.
client.subscribe("weather")
client.publish("weather", "ready")
first = client.recv(timeout=10)
assert first is not None and first["message"] == "ready", first
ws.send("PUBLISH weather from the browser browser1")
got = client.recv(timeout=10)
assert got is not None, "nothing reached kn-sock"
assert (got["topic"], got["message"], got["publisher"]) == (
    "weather",
    "from the browser",
    "browser1",
), got
print("ok a WebSocket publish reaches kn-sock's client", flush=True)
client.close()
ws.close()
