"""Real runs: feature maps, the bundled LeNet-5, weight files, the tokenizer and attention maps."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch

import models
from app.engine.live.activations import channel_values, layer_maps, run_and_capture
from app.engine.live.attention_maps import attention_maps
from app.engine.live.images import ImageError, decode_image, digits_to_input
from app.engine.live.tokenizer import BytePairTokenizer, bundled_tokenizer
from app.engine.live.weights import (
    WeightsError,
    bundled_state_dict,
    check_state_dict,
    load_digits_split,
    load_into,
    read_state_dict,
)
from models.bundled import torchvision_config


def test_feature_map_of_a_known_input_through_a_hand_set_conv() -> None:
    conv = torch.nn.Conv2d(1, 2, kernel_size=3, bias=False)
    edges = torch.tensor([[[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]]])  # Sobel, x
    identity = torch.zeros(1, 3, 3)
    identity[0, 1, 1] = 1.0
    with torch.no_grad():
        conv.weight.copy_(torch.stack([edges, identity]))
    model = torch.nn.Sequential(conv)
    image = torch.arange(25, dtype=torch.float32).reshape(1, 1, 5, 5)
    capture = run_and_capture(model, (image,), ["0"])
    out = capture.outputs["0"][0].numpy()
    x = image[0, 0].numpy()
    expected_edges = np.array(
        [[(x[i : i + 3, j : j + 3] * edges[0].numpy()).sum() for j in range(3)] for i in range(3)]
    )
    np.testing.assert_allclose(out[0], expected_edges)  # a ramp of slope 1 along x: 8 everywhere
    np.testing.assert_allclose(out[1], x[1:4, 1:4])
    maps = layer_maps("0", conv, capture.outputs["0"])
    assert maps.shape == [2, 3, 3] and maps.stats[0].min == maps.stats[0].max == 8.0
    values = channel_values("0", capture.outputs["0"], 1)
    assert values.values == x[1:4, 1:4].tolist()
    assert not conv._forward_hooks


def test_default_layers_follow_the_course() -> None:
    torch.manual_seed(0)
    alexnet = models.build_model("alexnet")
    assert models.get_architecture("alexnet").feature_layers(alexnet) == [
        "features.conv1",
        "features.pool1",
        "features.conv2",
        "features.pool2",
        "features.conv3",
        "features.conv4",
        "features.conv5",
        "features.pool3",
    ]
    resnet = models.build_model("resnet")
    assert models.get_architecture("resnet").feature_layers(resnet) == [
        "conv1",
        "maxpool",
        "layer1",
        "layer2",
        "layer3",
        "layer4",
    ]


def test_bundled_lenet_reaches_its_stated_accuracy() -> None:
    bundled = models.bundled_for("lenet5")
    meta = bundled.metadata()
    assert json.loads(meta["config"]) == bundled.config  # the file says what its facts say
    model = models.build_model("lenet5", bundled.config)
    load_into(model, bundled_state_dict(bundled), bundled.filename)
    _, (x_test, y_test) = load_digits_split()
    inputs = digits_to_input(x_test, float(meta["normalize_mean"]), float(meta["normalize_std"]))
    with torch.no_grad():
        correct = int((model.eval()(inputs).argmax(1) == torch.as_tensor(y_test)).sum())
    assert (correct, len(y_test)) == (int(meta["test_correct"]), int(meta["test_total"]))
    assert correct / len(y_test) >= 0.97


def _torchvision_resnet18_keys() -> dict[str, tuple[int, ...]]:
    """The state_dict layout of torchvision.models.resnet18, written out from its definition."""
    keys: dict[str, tuple[int, ...]] = {"conv1.weight": (64, 3, 7, 7)}

    def bn(prefix: str, channels: int) -> None:
        for name in ("weight", "bias", "running_mean", "running_var"):
            keys[f"{prefix}.{name}"] = (channels,)
        keys[f"{prefix}.num_batches_tracked"] = ()

    bn("bn1", 64)
    c_in = 64
    for stage, width in enumerate((64, 128, 256, 512), start=1):
        for block in range(2):
            prefix = f"layer{stage}.{block}"
            keys[f"{prefix}.conv1.weight"] = (width, c_in, 3, 3)
            bn(f"{prefix}.bn1", width)
            keys[f"{prefix}.conv2.weight"] = (width, width, 3, 3)
            bn(f"{prefix}.bn2", width)
            if block == 0 and stage > 1:
                keys[f"{prefix}.downsample.0.weight"] = (width, c_in, 1, 1)
                bn(f"{prefix}.downsample.1", width)
            c_in = width
    keys["fc.weight"] = (1000, 512)
    keys["fc.bias"] = (1000,)
    return keys


def test_a_torchvision_state_dict_round_trips_into_resnet18() -> None:
    layout = _torchvision_resnet18_keys()
    torch.manual_seed(1)
    state = {
        k: (torch.tensor(7) if k.endswith("num_batches_tracked") else torch.randn(shape)) for k, shape in layout.items()
    }
    buffer = io.BytesIO()
    torch.save(state, buffer)
    loaded = read_state_dict(buffer.getvalue(), "resnet18-f37072fd.pth")
    model = models.build_model("resnet", {"depth": 18})
    load_into(model, loaded, "resnet18-f37072fd.pth")
    for key, tensor in model.state_dict().items():
        assert torch.equal(tensor, state[key]), key
    assert torchvision_config("resnet18") == ("resnet", {"depth": 18})
    assert torchvision_config("resnext50_32x4d") == ("resnet", {"depth": 50, "groups": 32, "width_per_group": 4})
    assert torchvision_config("alexnet") == ("alexnet", {"variant": "torchvision"})


def test_mismatched_weights_list_every_problem() -> None:
    model = models.build_model("lenet5")
    state = dict(model.state_dict())
    state["c1.weight"] = torch.zeros(6, 3, 5, 5)
    del state["output.bias"]
    state["extra.weight"] = torch.zeros(1)
    with pytest.raises(WeightsError) as info:
        check_state_dict(model, state, "mine.pt")
    problems = info.value.problems
    assert "missing output.bias [10]" in problems
    assert "unexpected extra.weight [1]" in problems
    assert "c1.weight: the model has [6, 1, 5, 5], the file [6, 3, 5, 5]" in problems


class _Boom:
    def __reduce__(self):
        return (open, ("/tmp/layerscope-pwned", "w"))


def test_pickles_are_never_executed(tmp_path) -> None:
    import pickle
    from pathlib import Path

    payload = pickle.dumps({"weight": _Boom()})
    with pytest.raises(WeightsError, match="weights_only"):
        read_state_dict(payload, "evil.pt")
    assert not Path("/tmp/layerscope-pwned").exists()
    with pytest.raises(WeightsError):
        read_state_dict(b"garbage", "weights.safetensors")
    with pytest.raises(WeightsError, match=r"\.safetensors"):
        read_state_dict(b"x", "weights.exe")


def test_bad_images() -> None:
    with pytest.raises(ImageError) as info:
        decode_image(b"%PDF-1.4 not an image", 10_000_000)
    assert info.value.status == 415
    from PIL import Image

    big = io.BytesIO()
    Image.new("1", (4000, 4000)).save(big, format="PNG")  # 16 megapixels in a few kilobytes
    with pytest.raises(ImageError) as info:
        decode_image(big.getvalue(), 1_000_000)
    assert info.value.status == 413
    with pytest.raises(ImageError):
        decode_image(big.getvalue()[:200], 10_000_000)  # truncated


def test_bpe_merges_as_the_course_describes() -> None:
    tokenizer = BytePairTokenizer.train("low lower lowest low low", vocab_size=256 + 3)
    first = tokenizer.merges[0]
    assert (tokenizer.token_text(first[0]), tokenizer.token_text(first[1])) == ("l", "o")  # the most frequent pair
    encoding = tokenizer.encode(" lowest")
    assert tokenizer.decode(encoding.ids) == " lowest"
    bundled = bundled_tokenizer()
    assert bundled.vocab_size == 512
    text = "Attention is all you need: l'attention suffit."
    encoded = bundled.encode(text)
    assert bundled.decode(encoded.ids) == text
    assert encoded.merges and all(m.merged == m.left + m.right for m in encoded.merges)


@pytest.mark.parametrize(("name", "config"), [("gpt", {"preset": "nano"}), ("transformer", {"preset": "tiny"})])
def test_attention_rows_sum_to_one_and_the_causal_mask_holds(name: str, config: dict) -> None:
    torch.manual_seed(0)
    arch = models.get_architecture(name)
    model = models.build_model(name, config)
    ids = bundled_tokenizer().encode("The queries attend to the keys.").ids
    tokens = torch.tensor([ids])
    inputs = (tokens, tokens) if arch.kind(arch.parse_config(config)).value == "seq2seq" else (tokens,)
    layers = attention_maps(model, inputs, arch.attention_modules)
    kinds = {layer.kind for layer in layers}
    assert ("causal" in kinds) and (name == "gpt" or {"self", "cross"} <= kinds)
    for layer in layers:
        weights = torch.tensor(layer.heads)  # (H, T, T)
        assert weights.shape[-2:] == (len(ids), len(ids))
        torch.testing.assert_close(weights.sum(-1), torch.ones(weights.shape[:-1]), atol=2e-3, rtol=0)
        if layer.kind == "causal":
            assert torch.all(weights.triu(1) == 0)
    assert all(not m.record_weights for m in model.modules() if hasattr(m, "record_weights"))


def test_bundled_gpt_has_learned_its_corpus() -> None:
    import torch.nn.functional as F

    from app.engine.live.tokenizer import CORPUS_FILE

    bundled = models.bundled_for("gpt")
    torch.manual_seed(0)
    untrained = models.build_model("gpt", bundled.config).eval()
    model = models.build_model("gpt", bundled.config)
    load_into(model, bundled_state_dict(bundled), bundled.filename)
    assert model.lm_head.weight is model.wte.weight  # tying survives loading
    ids = torch.tensor(bundled_tokenizer().encode(CORPUS_FILE.read_text(encoding="utf-8")).ids[:129])  # trained on 128
    with torch.no_grad():
        loss = F.cross_entropy(model.eval()(ids[None, :-1])[0], ids[1:]).item()
        random_loss = F.cross_entropy(untrained(ids[None, :-1])[0], ids[1:]).item()
    assert random_loss > 5  # about log(512) = 6.2: a uniform guess over the vocabulary
    assert loss < 0.5  # the text is nearly memorised
    assert abs(loss - float(bundled.metadata()["loss"])) < 0.3  # and close to the loss its training recorded
