"""The benchmark's chat request: a system and a user message of 356 words together, non-streaming or streaming.

python bench/gateway/request_body.py [--stream] [--model mock-gpt] > body.json
"""

from __future__ import annotations

import argparse
import json
import sys

SYSTEM = (
    "You are the booking assistant of a regional rail operator. Answer in clear, friendly English and keep "
    "every reply under two hundred words. Only use facts about the traveller's journey that appear in this "
    "conversation; never invent train numbers, platforms, seat numbers, fares or refund amounts, and say so "
    "plainly when you do not know. Explain the delay compensation rules when they apply: a delay of sixty "
    "minutes or more earns a refund of a quarter of the fare, two hours or more earns half, and a cancelled "
    "connection lets the traveller take the next train without paying again. Tickets bought at a discount "
    "can be changed once for a small fee before departure. Mention the free assistance service when the "
    "traveller needs help changing trains. Do not give legal advice and do not promise anything the timetable "
    "cannot guarantee. Finish with one practical next step."
)
USER = (
    "Hello, I booked a return trip from the coast to the capital for next Thursday, leaving on the early "
    "morning train and coming back the same evening. Yesterday I got an email saying that my outbound train "
    "was cancelled because of engineering works, and that a replacement bus would run for the first part of "
    "the route, which would make me arrive almost ninety minutes later than planned. That is a problem, "
    "because I have a job interview at eleven and I cannot risk being late. I bought the ticket with a "
    "discount card about three weeks ago and paid for a reserved seat on both trains. Could I travel the "
    "evening before instead, and if so, would I have to pay the difference or a change fee? If I keep the "
    "booking and the bus really makes me ninety minutes late, can I claim part of the fare back, and how do "
    "I do that? I would also like to know whether my seat reservation on the return train stays valid if I "
    "change the outbound part, or whether I need to book it again. Finally, is there any chance that the "
    "works will be postponed, and where can I check that before I decide? Thank you very much."
)
WORDS = len(SYSTEM.split()) + len(USER.split())


def body(model: str = "mock-gpt", stream: bool = False) -> dict:
    request = {
        "model": model,
        "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": USER}],
        "temperature": 0.2,
        "max_tokens": 256,
    }
    if stream:
        request["stream"] = True
        request["stream_options"] = {"include_usage": True}
    return request


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="mock-gpt")
    parser.add_argument("--stream", action="store_true")
    args = parser.parse_args()
    json.dump(body(args.model, args.stream), sys.stdout)


if __name__ == "__main__":
    main()
