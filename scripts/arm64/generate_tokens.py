"""Print the greedy tokens of the smallest synthetic model, for comparing machines.

The same seed and shape give the same weights everywhere; greedy decoding must then give the
same tokens on x86 (AVX2) and arm64 (NEON, with or without dotprod).
    python generate_tokens.py [MODEL] [N_TOKENS]
"""
import sys

from slmprof.engine.model import Model
from slmprof.engine.registry import SHAPES


def smallest_synthetic():
    def weight_count(name):
        s = SHAPES[name]
        return s.n_layer * s.dim * (s.dim + s.ffn) + s.vocab * s.dim
    return "synth:" + min(SHAPES, key=weight_count)


def main():
    name = sys.argv[1] if len(sys.argv) > 1 else smallest_synthetic()
    n_tokens = int(sys.argv[2]) if len(sys.argv) > 2 else 12
    prompt = "The quick brown fox jumps over the lazy dog"
    model = Model.load(name, threads=2)
    try:
        ids = [tok for tok, _ in model.generate(prompt, max_tokens=n_tokens,
                                                 temperature=0.0, stop_at_eos=False)]
        # The most likely next token after every prompt position: many distinct argmaxes, so a
        # kernel that goes wrong anywhere shows even when generation settles into a repeat.
        model.reset()
        logits = model.prefill(model.tokenizer.encode(prompt), all_logits=True)
        per_position = logits.argmax(axis=-1)
    finally:
        model.close()
    print(name, "generated:", " ".join(map(str, ids)),
          "| prompt argmax:", " ".join(map(str, per_position)))


if __name__ == "__main__":
    main()
