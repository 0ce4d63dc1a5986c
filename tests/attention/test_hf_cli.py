"""``python -m attention.verify --hf NAME_OR_PATH``: verdicts and exit codes on tiny random-init
transformers models saved to temp dirs (GPT-2, BERT, a 1-layer Mistral with a sliding window), in
eager and SDPA attention, and every usage error by its message. Offline: HF_HUB_OFFLINE=1 and any
socket connection fails. The CLI's ``main(argv)`` runs in-process (transformers is imported once).
"""
from __future__ import annotations

import json
import re
import socket

import pytest
import torch

pytest.importorskip("transformers")

import _hf_tiny  # noqa: E402  (tests/attention on sys.path)

from attention.verify.__main__ import main  # noqa: E402

T = 8
W = 3


@pytest.fixture(scope="module", autouse=True)
def offline():
    import huggingface_hub.constants as hub

    def refuse(*args, **kwargs):
        raise RuntimeError(f"network access attempted in an offline test: {args[:2]}")

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setattr(hub, "HF_HUB_OFFLINE", True)
        mp.setattr(socket, "create_connection", refuse)
        mp.setattr(socket.socket, "connect", refuse)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        yield
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny-hf-cli")
    out = {kind: _hf_tiny.save(kind, root / kind) for kind in ("gpt2", "bert")}
    out["mistral"] = _hf_tiny.save("mistral", root / "mistral", layers=1, window=W)
    out["vit"] = _vit(root / "vit")                                  # no token embeddings
    return out


@pytest.fixture
def cli(capsys):
    def call(*args):
        rc = main([str(a) for a in args])
        cap = capsys.readouterr()
        return rc, cap.out, cap.err
    return call


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_gpt2_passes_causal_in_both_attention_implementations(dirs, cli, attn):
    rc, out, err = cli("--hf", dirs["gpt2"], "--seq-len", T, "--attn", attn)
    assert rc == 0, out + err
    assert f"input (B, T, E) = (1, {T}, {_hf_tiny.E})" in out
    assert f"E = {_hf_tiny.E} from the config (GPT2Model); attention implementation: {attn}" in out
    assert "max positions: 64" in out and "random rows of the embedding table" in out
    assert re.search(r"loaded in \d+\.\d s", out) and re.search(r"checked in \d+\.\d s", out), \
        "the report says where the time went (loading vs checking)"
    assert out.rstrip().splitlines()[-1].startswith("PASS")


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_bert_fails_causal_and_passes_full(dirs, cli, attn):
    rc, out, _ = cli("--hf", dirs["bert"], "--seq-len", T, "--attn", attn, "--json", "--top", 100)
    data = json.loads(out)
    assert rc == 1 and data["passed"] is False
    assert {(l["out_pos"], l["in_pos"]) for l in data["leaks"]} == \
        {(i, j) for i in range(T) for j in range(i + 1, T)}         # every future pair
    rc, out, _ = cli("--hf", dirs["bert"], "--seq-len", T, "--attn", attn, "--allowed", "full")
    assert rc == 0 and "allowed relation: full" in out
    rc, out, _ = cli("--hf", dirs["bert"], "--seq-len", T, "--attn", attn, "--allowed", "auto")
    assert rc == 0 and "auto -> full: the config says bidirectional (an encoder)" in out


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_one_layer_mistral_passes_its_window_and_fails_one_narrower(dirs, cli, attn):
    args = ("--hf", dirs["mistral"], "--seq-len", T, "--attn", attn)
    rc, out, _ = cli(*args, "--allowed", f"sliding:{W}")
    assert rc == 0, out
    rc, out, _ = cli(*args, "--allowed", f"sliding:{W - 1}", "--json", "--top", 100)
    data = json.loads(out)
    assert rc == 1 and data["n_leaks"] == T - (W - 1)
    assert {l["out_pos"] - l["in_pos"] for l in data["leaks"]} == {W - 1}   # exactly one key too far
    assert data["reach"] == W
    rc, out, _ = cli(*args, "--allowed", "auto")
    assert rc == 0 and f"auto -> sliding:{W}: config.sliding_window = {W} over 1 layers" in out


def test_padded_encoder_passes_its_padding_relation_and_fails_a_shorter_one(dirs, cli):
    rc, out, _ = cli("--hf", dirs["bert"], "--seq-len", T, "--padding", f"{T},5", "--allowed", "auto")
    assert rc == 0, out
    assert "input (B, T, E) = (2, 8, 32)" in out and f"auto -> padding:{T},5" in out
    assert "right padding, real lengths [8, 5]" in out
    rc, out, _ = cli("--hf", dirs["bert"], "--seq-len", T, "--padding", f"{T},5", "--allowed",
                     f"padding:{T},4", "--json", "--top", 100)
    assert rc == 1 and {l["batch"] for l in json.loads(out)["leaks"]} == {1}


def _vit(path):
    import transformers as tf

    cfg = tf.ViTConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                       image_size=8, patch_size=4)
    tf.ViTModel(cfg).save_pretrained(path)
    return path


@pytest.mark.parametrize("case, message", [
    ("empty_dir", "is not a Hugging Face model directory: no config.json"),
    ("config_only", "has no model weights: expected model.safetensors next to config.json"),
    ("bin_only", "holds only pickled weights (pytorch_model.bin), and attention.hf loads safetensors only"),
    ("missing", "expected name_or_path to be an existing model directory or a hub id but"),
    ("too_long", "expected seq_len <= 64 (the model's max positions) but found 65"),
    ("no_inputs_embeds", "model ViTModel cannot run on inputs_embeds: its input embeddings are a "
                         "ViTPatchEmbeddings, not a token-embedding table"),
    ("dim", "--dim 16 does not match the model's hidden size 32"),
    ("padding_bad", "expected --padding lengths in 1..T=8 (--seq-len) but found '8,9'"),
    ("padding_text", "expected --padding as comma-separated lengths (e.g. 8,5) but found 'a,b'"),
    ("padding_batch", "--padding gives 2 lengths, so the batch is 2, but --batch is 3"),
    ("allowed", "expected --allowed to be causal, full, sliding:W, prefix:P, document:IDS, padding:LENS "
                "or auto but found 'diagonal'"),
    ("output", "--output applies to --model only"),
    ("padding_for_model", "--padding applies to --hf only"),
])
def test_usage_errors_exit_2_with_one_line(dirs, cli, tmp_path, case, message):
    gpt2 = dirs["gpt2"]
    if case in ("config_only", "bin_only"):
        (tmp_path / "config.json").write_bytes((gpt2 / "config.json").read_bytes())
        if case == "bin_only":
            (tmp_path / "pytorch_model.bin").write_bytes(b"not unpickled")
    args = {
        "empty_dir": ["--hf", tmp_path], "config_only": ["--hf", tmp_path], "bin_only": ["--hf", tmp_path],
        "missing": ["--hf", tmp_path / "nothing-here"],
        "too_long": ["--hf", gpt2, "--seq-len", 65],
        "no_inputs_embeds": ["--hf", dirs["vit"]],
        "dim": ["--hf", gpt2, "--dim", 16],
        "padding_bad": ["--hf", gpt2, "--seq-len", T, "--padding", "8,9"],
        "padding_text": ["--hf", gpt2, "--seq-len", T, "--padding", "a,b"],
        "padding_batch": ["--hf", gpt2, "--seq-len", T, "--padding", "8,5", "--batch", 3],
        "allowed": ["--hf", gpt2, "--seq-len", T, "--allowed", "diagonal"],
        "output": ["--hf", gpt2, "--output", "logits"],
        "padding_for_model": ["--model", "attention.models:induction_embeddings_to_logits", "--padding", "3"],
    }[case]
    rc, out, err = cli(*args)
    assert rc == 2, out + err
    assert message in err, err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_hf_is_exclusive_with_model_and_zoo(dirs, cli, capsys):
    for other in (["--zoo"], ["--model", "x:y"]):
        with pytest.raises(SystemExit) as info:
            main(["--hf", str(dirs["gpt2"]), *other])
        assert info.value.code == 2
        assert "not allowed with argument" in capsys.readouterr().err


def test_json_error_is_json(dirs, cli):
    rc, out, err = cli("--hf", dirs["gpt2"], "--seq-len", 65, "--json")
    assert rc == 2 and json.loads(out) == {"passed": False, "error": err.strip()[len("error: "):]}


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_fast_verdict_by_default_at_a_longer_length(dirs, cli, attn):
    n = 40                                                           # B*T*E = 1280 > 1024: fast
    rc, out, _ = cli("--hf", dirs["gpt2"], "--seq-len", n, "--attn", attn, "--json")
    data = json.loads(out)
    assert rc == 0 and data["mode"] == "fast" and data["precision"]["dependency_map"] == "float32"
    rc, out, _ = cli("--hf", dirs["bert"], "--seq-len", n, "--attn", attn, "--json", "--top", 1000)
    data = json.loads(out)
    assert rc == 1 and data["mode"] == "fast" and data["n_leaks"] == n * (n - 1) // 2
    assert data["precision"]["dependency_map"] == "float32 pattern, float64 leaking rows"
