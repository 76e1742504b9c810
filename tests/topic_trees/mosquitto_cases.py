"""Asks a real Mosquitto which topics each filter matches, with Eclipse Paho's MQTT client.

Reads cases from stdin, one per line: `<filter> <topic>`. For each case a new subscriber
subscribes to the filter and to a sentinel topic `end/<n>`; once Mosquitto has acknowledged
both (SUBACK), a publisher sends one message to the topic and then one to the sentinel.
Mosquitto keeps the order of one publisher's QoS 0 messages, so if the case's message
arrives, it arrives before the sentinel. Prints `<n> match` or `<n> nomatch` per case.
Usage: python3 mosquitto_cases.py <port>   (Mosquitto on 127.0.0.1:<port>)
"""

import sys
import threading

import paho.mqtt.client as mqtt

TIMEOUT = 10  # seconds for any one step


def client(name):
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=name)
    c.connect("127.0.0.1", int(sys.argv[1]))
    c.loop_start()
    return c


def run_case(n, topic_filter, topic, publisher):
    sentinel = f"end/{n}"
    subscribed = threading.Event()
    done = threading.Event()
    seen = []

    def on_subscribe(_client, _userdata, _mid, _reasons, _properties):
        subscribed.set()

    def on_message(_client, _userdata, message):
        seen.append(message.topic)
        if message.topic == sentinel:
            done.set()

    subscriber = client(f"case{n}")
    subscriber.on_subscribe = on_subscribe
    subscriber.on_message = on_message
    subscriber.subscribe([(topic_filter, 0), (sentinel, 0)])
    if not subscribed.wait(TIMEOUT):
        sys.exit(f"case {n}: no SUBACK for {topic_filter}")
    publisher.publish(topic, f"case {n}").wait_for_publish(TIMEOUT)
    publisher.publish(sentinel, "end").wait_for_publish(TIMEOUT)
    if not done.wait(TIMEOUT):
        sys.exit(f"case {n}: the sentinel {sentinel} never arrived")
    subscriber.loop_stop()
    subscriber.disconnect()
    return topic in seen[: seen.index(sentinel)]


def main():
    publisher = client("publisher")
    for n, line in enumerate(sys.stdin):
        topic_filter, topic = line.split()
        verdict = "match" if run_case(n, topic_filter, topic, publisher) else "nomatch"
        print(n, verdict, flush=True)
    publisher.loop_stop()
    publisher.disconnect()


main()
