#!/usr/bin/env python3
"""Reference k-shot prompts and max_examples samples for test/downstream-tasks.test.ts, from a Python
re-implementation of the algorithm documented in lib/random.ts and stages/downstream/prompts.ts
(mulberry32, the stream seed mix, rejection sampling of shots, Fisher-Yates for BIG-bench choices
and for the sample of max_examples):

    python3 tools/reference/downstream_prompts.py

prints the prompts the test pastes as constants. The tasks are copied verbatim into the test.
"""
import json

M32 = 0xFFFFFFFF


def imul(a, b):
    return (a * b) & M32


def mulberry32(seed):
    state = [seed & M32]

    def nxt():
        state[0] = (state[0] + 0x6D2B79F5) & M32
        t = state[0]
        t = imul(t ^ (t >> 15), t | 1)
        t ^= (t + imul(t ^ (t >> 7), t | 61)) & M32
        return ((t ^ (t >> 14)) & M32) / 4294967296

    return nxt


def stream_seed(seed, purpose, index):
    h = ((seed & M32) ^ imul(purpose, 0x85EBCA6B)) & M32
    h = imul(h ^ (h >> 16), 0x7FEB352D)
    h = (h ^ imul(index + 1, 0x9E3779B1)) & M32
    h = imul(h ^ (h >> 15), 0x846CA68B)
    return (h ^ (h >> 16)) & M32


SHOTS, CHOICES, SAMPLE = 1, 2, 3


def shot_indices(n, i, k, seed):
    nxt = mulberry32(stream_seed(seed, SHOTS, i))
    out, taken = [], {i}
    while len(out) < k:
        j = int(nxt() * n)
        if j in taken:
            continue
        taken.add(j)
        out.append(j)
    return out


def shuffled(xs, nxt):
    a = list(xs)
    for i in range(len(a) - 1, 0, -1):
        j = int(nxt() * (i + 1))
        a[i], a[j] = a[j], a[i]
    return a


JSONL = [
    {"prompt": "Q: 1+1?\nA:", "choices": [" 2", " 3"], "answer": 0},
    {"prompt": "Q: 2+2?\nA:", "choices": [" 4", " 5"], "answer": 0},
    {"prompt": "Q: 3+3?\nA:", "choices": [" 5", " 6"], "answer": 1},
    {"prompt": "Q: 4+4?\nA:", "choices": [" 8", " 9"], "answer": 0},
]
BIGBENCH = {
    "task_prefix": "Sums.",
    "examples": [
        {"input": "1+1", "target_scores": {"2": 1, "3": 0, "11": 0}},
        {"input": "2+3", "target_scores": {"5": 1, "6": 0, "23": 0}},
        {"input": "4+4", "target_scores": {"44": 0, "8": 1, "9": 0}},
    ],
}
SEED = 7

print("jsonl, shots 2, seed 7:")
for i, ex in enumerate(JSONL):
    shots = shot_indices(len(JSONL), i, 2, SEED)
    demos = "".join(JSONL[j]["prompt"] + JSONL[j]["choices"][JSONL[j]["answer"]] + "\n\n" for j in shots)
    print(f"  {i}: shots {shots}: {json.dumps(demos + ex['prompt'])}")

print("bigbench, shots 1, seed 7 (defaults: \\nQ: , \\nA: , \\n  choice: , choices appended):")
exs = BIGBENCH["examples"]


def bb_prompt(i):
    ex = exs[i]
    keys = list(ex["target_scores"].keys())
    order = shuffled(sorted(keys), mulberry32(stream_seed(SEED, CHOICES, i)))
    return "\nQ: " + ex["input"] + "\n  choice: " + "\n  choice: ".join(order) + "\nA: "


def best(i):
    ts = exs[i]["target_scores"]
    m = max(ts.values())
    return next(k for k, v in ts.items() if v == m)


def bb_shots(i, k, separator):
    # BIG-bench (and lm-evaluation-harness's port of it): task_prefix + separator.join(shot + its best
    # target) + separator + the example's own prompt; few_shot_example_separator defaults to "\n".
    shots = shot_indices(len(exs), i, k, SEED)
    return shots, BIGBENCH["task_prefix"] + separator.join(bb_prompt(j) + best(j) for j in shots) + separator + bb_prompt(i)


for i in range(len(exs)):
    shots, text = bb_shots(i, 1, "\n")
    print(f"  {i}: shots {shots}: {json.dumps(text)}")

print('bigbench, shots 2, seed 7, few_shot_example_separator "\\n\\n":')
for i in range(len(exs)):
    shots, text = bb_shots(i, 2, "\n\n")
    print(f"  {i}: shots {shots}: {json.dumps(text)}")


def sample_indices(n, k, seed):
    # max_examples: the first k of a Fisher-Yates shuffle of 0..n-1 (stream SAMPLE, index 0), ascending.
    if k >= n:
        return list(range(n))
    return sorted(shuffled(range(n), mulberry32(stream_seed(seed, SAMPLE, 0)))[:k])


print("max_examples samples (n, N, seed: positions):")
print("  shuffle of 0..9, seed 7:", shuffled(range(10), mulberry32(stream_seed(7, SAMPLE, 0))))
for n, k, seed in [(10, 4, 7), (10, 5, 7), (10, 4, 8), (4, 2, 7), (50, 6, 1234)]:
    print(f"  {n}, {k}, {seed}: {sample_indices(n, k, seed)}")


def bigbench_prompts(task, shots, seed):
    # BIG-bench's documented format: task_prefix + separator.join(shot prompt + its best target)
    # + separator + the example's prompt, where a prompt is example_input_prefix + input
    # [+ choice_prefix + c1 + choice_prefix + c2 ...] + example_output_prefix.
    inp = task.get("example_input_prefix", "\nQ: ")
    out = task.get("example_output_prefix", "\nA: ")
    cp = task.get("choice_prefix", "\n  choice: ")
    sep = task.get("few_shot_example_separator", "\n")
    exs = task["examples"]

    def prompt(i):
        ex = exs[i]
        choices = ""
        if task.get("append_choices_to_input", True):
            order = shuffled(sorted(ex["target_scores"].keys()), mulberry32(stream_seed(seed, CHOICES, i)))
            choices = cp + cp.join(order)
        return inp + ex["input"] + choices + out

    def best(i):
        ts = exs[i]["target_scores"]
        m = max(ts.values())
        return next(k for k, v in ts.items() if v == m)

    res = []
    for i in range(len(exs)):
        s = shot_indices(len(exs), i, shots, seed)
        demos = "".join(prompt(j) + best(j) + sep for j in s)
        res.append((s, task.get("task_prefix", "") + demos + prompt(i)))
    return res


import os

here = os.path.join(os.path.dirname(__file__), "..", "..", "test", "fixtures", "bigbench-parent")
for sub in ["arithmetic", "colours"]:
    with open(os.path.join(here, sub, "task.json")) as f:
        task = json.load(f)
    print(f"test/fixtures/bigbench-parent/{sub}, shots 1, seed 7:")
    for i, (s, text) in enumerate(bigbench_prompts(task, 1, 7)):
        print(f"  {i}: shots {s}: {json.dumps(text)}")
