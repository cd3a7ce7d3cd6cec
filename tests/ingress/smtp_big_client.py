"""Send CONNECTIONS concurrent e-mails, each with a SIZE-byte PDF attachment, to a fax number
(run as a separate process so that the client's work does not share the listener's GIL).

usage: smtp_big_client.py PORT CONNECTIONS SIZE  -> prints one JSON line per reply
"""

from __future__ import annotations

import json
import os
import smtplib
import sys
import threading
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY


def main() -> None:
    port, connections, size = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    message = EmailMessage(policy=SMTP_POLICY)
    message["From"] = "bob@acme.test"
    message["Subject"] = "Big fax"
    message.set_content("Please find the document attached.")
    message.add_attachment(
        os.urandom(size), maintype="application", subtype="pdf", filename="big.pdf"
    )
    data = message.as_bytes()
    replies: list[dict[str, object]] = []
    lock = threading.Lock()

    def send(index: int) -> None:
        with smtplib.SMTP("127.0.0.1", port, timeout=300) as client:
            client.ehlo("big.test")
            client.mail("bob@acme.test", [f"SIZE={len(data)}"])
            client.rcpt(f"+1781617{index:04d}@fax.teleway.test")
            code, text = client.data(data)
        with lock:
            replies.append({"code": code, "text": text.decode()})

    threads = [threading.Thread(target=send, args=(i,)) for i in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for reply in replies:
        print(json.dumps(reply))


if __name__ == "__main__":
    main()
