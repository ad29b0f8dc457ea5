"""Synthetic needle conversations for the long-context demo (examples/long_context/run.sh). The user
turn is RULER's single-needle prompt exactly as `smol eval`'s needle task writes it (the preamble, a
line of the bundled prose with one "special magic number" sentence at a random depth, the question
on a line of its own), between MIN and MAX tokens long; the assistant turn is the answer, " N.".
Rendered through the demo's plain template (the turns' contents one after the other), a conversation
is the needle prompt followed by its answer, and SFT puts the loss on the answer alone.

Usage: python3 make_needle_data.py TOKENIZER.json PROSE.txt MIN MAX COUNT SEED DIGITS OUT.jsonl
"""
import json
import random
import re
import sys

from tokenizers import Tokenizer

PREAMBLE = ("Some special magic numbers are hidden within the following text. Make sure to memorize it. "
            "I will quiz you about the numbers afterwards.")
KEYS = ["apple", "river", "falcon", "marble", "lantern", "orchid", "glacier", "compass", "violin", "harbor",
        "meadow", "copper", "saffron", "tundra", "beacon", "quartz", "willow", "ember", "canyon", "pepper",
        "dolphin", "summit", "ivory", "thistle", "cobalt", "prairie", "sparrow", "garnet", "lagoon", "cedar"]


def prompt(filler, depth, key, value):
    at = round(len(filler) * depth)
    body = filler[:at] + [f"One of the special magic numbers for {key} is: {value}."] + filler[at:]
    return (f"{PREAMBLE}\n{' '.join(body)}\nWhat is the special magic number for {key} mentioned in the provided text? "
            f"The special magic number for {key} mentioned in the provided text is")


def main():
    tok_path, prose_path = sys.argv[1], sys.argv[2]
    low, high, count, seed, out = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]), sys.argv[8]
    digits = int(sys.argv[7])
    tok = Tokenizer.from_file(tok_path)
    text = open(prose_path, encoding="utf-8").read().replace("\n", " ")
    sentences = [s.strip() for s in re.split(r"(?<=[.!?])\s+", text) if s.strip()]
    lengths = [len(tok.encode(" " + s).ids) for s in sentences]
    rng = random.Random(seed)
    with open(out, "w") as f:
        for _ in range(count):
            key, value = rng.choice(KEYS), str(rng.randrange(10 ** (digits - 1), 10 ** digits))
            depth, start, target = rng.random(), rng.randrange(len(sentences) - 400), rng.randint(low, high)
            n, budget = 0, target - len(tok.encode(prompt([], depth, key, value)).ids)
            while budget - lengths[start + n] >= 0:
                budget -= lengths[start + n]
                n += 1
            text = prompt(sentences[start:start + n], depth, key, value)
            f.write(json.dumps({"messages": [{"role": "user", "content": text},
                                             {"role": "assistant", "content": f" {value}."}]}) + "\n")


if __name__ == "__main__":
    main()
