"""One counted run of slmprof, the workload llama-bench runs (one thread, no sampling):
prefill PROMPT tokens, then from an empty cache decode GEN tokens one at a time.
    python workload.py MODEL PROMPT GEN        prints the kernel path it ran
Token ids are a fixed sequence (BOS first, as llama-bench starts): the work does not depend
on which tokens they are. The context is the same for every run, so loading costs the same.
"""
import sys

from slmprof.engine import quant
from slmprof.engine.model import Model

CTX = 256


def token_ids(n, vocab, bos):
    return [bos] + [(7919 * i + 13) % vocab for i in range(1, n)]


def main():
    path, n_prompt, n_gen = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    model = Model.load(path, threads=1, ctx=CTX)
    try:
        vocab = model.config.vocab
        bos = model.tokenizer.bos_id if model.tokenizer is not None and model.tokenizer.bos_id is not None else 1
        if n_prompt:
            model.prefill(token_ids(n_prompt, vocab, bos))
        model.reset()
        for tok in token_ids(n_gen, vocab, bos):
            model.decode(tok)
    finally:
        model.close()
    print(quant.active_isa())  # the kernel path that ran


if __name__ == "__main__":
    main()
