"""The Flask labsheet's publisher logic, unchanged but for the address: it POSTs JSON to
/publish with `requests` and prints the status and the answer.

    python3 flask_publisher.py http://127.0.0.1:5000 weather "Rainy day ahead!" pub1
"""
import sys

import requests

base, topic, message, publisher = sys.argv[1:5]
url = base + "/publish"
data = {"topic": topic, "message": message, "publisher": publisher}
response = requests.post(url, json=data)
print(response.status_code, response.text)
