"""The engine on the real Gemma 3 270M (Q4_K_M): its tokenizer, coherent text, and, with
llama.cpp (llama-cpp-python) installed, the same tokens, perplexity and greedy words as
llama.cpp on the same file.

Skipped, with the reason, when the model has not been downloaded (`python -m slmprof models
--fetch gemma3-270m`). The text is the English of the stdlib's pydoc_data topics.
"""
import importlib.util

import numpy as np
import pytest

from slmprof.analysis.perplexity import log_softmax, perplexity
from slmprof.engine.gguf import GGUFFile
from slmprof.engine.model import Model
from slmprof.engine.tokenizer import Tokenizer

pytestmark = pytest.mark.real_model

needs_llama_cpp = pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None,
                                     reason="llama_cpp is not installed (pip install "
                                            "llama-cpp-python)")

TEXTS = ["The capital of France is", " leading space", "tabs\tand  runs   of spaces\n\n\nnewlines",
         "émigré naïve café — “quotes” 日本語 🤖", "def f(x):\n    return x ** 2  # comment\n",
         "<start_of_turn>user\nWhat is 2 + 2?<end_of_turn>\n<start_of_turn>model\n", "1234567890"]
# Prompts whose greedy continuations are compared with llama.cpp's
PROMPTS = ["The capital of France is", "The opposite of hot is", "Water boils at a temperature of",
           "Once upon a time, there was a"]


def topics_text():
    from pydoc_data.topics import topics
    return "\n\n".join(topics[k] for k in sorted(topics))


@pytest.fixture(scope="module")
def tokenizer(gemma_model_path):
    with GGUFFile(gemma_model_path) as gf:
        return Tokenizer.from_gguf(gf)


@pytest.fixture(scope="module")
def model(gemma_model_path):
    with Model.load(gemma_model_path, threads=2, ctx=640) as m:
        yield m


def test_tokenizer_honours_the_file(tokenizer):
    assert (tokenizer.bos_id, tokenizer.eos_id) == (2, 1) and tokenizer.add_bos
    assert not tokenizer.add_space_prefix
    ids = tokenizer.encode("Hello world", add_bos=True)
    assert ids[0] == 2 and tokenizer.tokens[ids[1]] == "Hello"        # no space prefixed
    turn = tokenizer.token_to_id["<start_of_turn>"]
    assert tokenizer.encode("<start_of_turn>user", add_bos=False)[0] == turn
    assert turn not in tokenizer.encode("<start_of_turn>user", add_bos=False, parse_special=False)
    for text in TEXTS:
        assert tokenizer.decode(tokenizer.encode(text, add_bos=False)) == text


@needs_llama_cpp
def test_tokens_are_llama_cpps(gemma_model_path, tokenizer):
    import llama_cpp
    llm = llama_cpp.Llama(model_path=str(gemma_model_path), vocab_only=True, verbose=False)
    for text in TEXTS + [topics_text()[:20000]]:
        assert tokenizer.encode(text, add_bos=True) == llm.tokenize(text.encode(), add_bos=True,
                                                                   special=True), text[:80]


def test_greedy_continuations_are_coherent(model):
    # (this base model continues "The capital of France is" with " the capital of the country
    # of France", as llama.cpp does)
    text = "".join(piece for _, piece in model.generate("The opposite of hot is", max_tokens=6))
    assert "cold" in text.lower(), text
    text = "".join(piece for _, piece in model.generate("Water boils at a temperature of",
                                                        max_tokens=6))
    assert "100" in text, text


def test_one_window_perplexity_is_plausible(model):
    tokens = model.tokenizer.encode(topics_text(), add_bos=False)[:256]
    result = perplexity(model, tokens, 256)
    # a 270M model on technical English: single digits to a few tens; a broken forward pass
    # gives hundreds to thousands (uniform over the vocabulary is 262144)
    assert 3 < result.perplexity < 60, result
    assert result.tokens == 127


def test_thread_counts_give_identical_logits(gemma_model_path, model):
    tokens = model.tokenizer.encode("Threads split rows, never a sum, so", add_bos=True)
    with Model.load(gemma_model_path, threads=1, ctx=64) as one:
        model.reset()
        np.testing.assert_array_equal(one.prefill(tokens, all_logits=True),
                                      model.prefill(tokens, all_logits=True))


def test_prefill_past_the_window_equals_token_by_token(model):
    """600 tokens: the sliding layers drop the oldest positions from the 513th on, the same in
    one batch and one token at a time. The batched and one-token kernels sum in different
    orders, which moves some 8-bit activation codes and, through the cache, later tokens a
    little (SmolLM2 the same: KL ~0.003 nats): the distributions agree, not the bits."""
    tokens = model.tokenizer.encode(topics_text(), add_bos=True)[:600]
    model.reset()
    batch = model.prefill(tokens, last=40)
    model.reset()
    model.prefill(tokens[:560])
    steps = np.stack([model.decode(t) for t in tokens[560:]])
    p, q = log_softmax(batch), log_softmax(steps)
    kl = (np.exp(p) * (p - q)).sum(axis=1)
    assert kl.mean() < 0.02 and kl.max() < 0.1, kl
    assert (batch.argmax(1) == steps.argmax(1)).mean() >= 0.9


def greedy(model, prompt_ids, n):
    model.reset()
    logits = model.prefill(prompt_ids)
    out = []
    for _ in range(n):
        out.append(int(np.argmax(logits)))
        logits = model.decode(out[-1])
    return out


@needs_llama_cpp
@pytest.mark.slow
def test_perplexity_and_greedy_words_agree_with_llama_cpp(gemma_model_path, model):
    """llama.cpp's method at ctx 256 (BOS-led non-overlapping windows, second half scored), run
    through the same code on llama.cpp's logits: within 1%. Greedy continuations begin with the
    same words."""
    from slmprof.bench.backends import LlamaCppModel
    tokens = model.tokenizer.encode(topics_text(), add_bos=False)[:16 * 256]
    ours = perplexity(model, tokens, 256)
    with LlamaCppModel(gemma_model_path, ctx=256, threads=2, tokenizer=model.tokenizer) as ref:
        theirs = perplexity(ref, tokens, 256)
        print(f"perplexity at ctx 256 over {ours.tokens} tokens: slmprof {ours.perplexity:.4f}, "
              f"llama.cpp {theirs.perplexity:.4f}")
        assert abs(ours.perplexity / theirs.perplexity - 1) < 0.01, (ours, theirs)
        for prompt in PROMPTS:
            ids = model.tokenizer.encode(prompt, add_bos=True)
            a = model.tokenizer.decode(greedy(model, ids, 12)).split()
            b = model.tokenizer.decode(greedy(ref, ids, 12)).split()
            print(f"{prompt!r}: slmprof {' '.join(a)!r} / llama.cpp {' '.join(b)!r}")
            assert a[:3] == b[:3], (prompt, a, b)
    # windows of 640: the scored half sees past the 512-position sliding window; an f16 cache
    # like llama.cpp's (f32 moves this text's perplexity by about 0.6%)
    tokens = tokens[:2 * 640]
    with Model.load(gemma_model_path, threads=2, ctx=640, kv_type="f16") as f16:
        ours = perplexity(f16, tokens, 640)
    with LlamaCppModel(gemma_model_path, ctx=640, threads=2, tokenizer=model.tokenizer) as ref:
        theirs = perplexity(ref, tokens, 640)
    print(f"perplexity at ctx 640: slmprof {ours.perplexity:.4f}, llama.cpp {theirs.perplexity:.4f}")
    assert abs(ours.perplexity / theirs.perplexity - 1) < 0.01, (ours, theirs)
