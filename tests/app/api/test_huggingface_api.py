"""Hugging Face architectures through the API and the CLI: the same totals, the same refusals."""

from __future__ import annotations

import csv
import io
import json

import pytest

from app.cli import main
from models.huggingface import CONFIG_DIR

LLAMA = {"architecture": "huggingface", "config": {"preset": "llama-3.1-8b"}, "input": {"shape": [512]}}


def test_api_and_cli_give_the_same_totals(client, capsys: pytest.CaptureFixture[str]) -> None:
    api = client.post("/api/summary", json=LLAMA)
    assert api.status_code == 200, api.text[:300]
    totals = api.json()["totals"]
    assert totals["params"] == 8_030_261_248  # Meta's published count
    assert (
        main(
            [
                "summary",
                "huggingface",
                "--hf-config",
                str(CONFIG_DIR / "llama-3.1-8b.json"),
                "--input-size",
                "512",
                "--json",
            ]
        )
        == 0
    )
    cli = json.loads(capsys.readouterr().out)["totals"]
    assert cli == totals


def test_a_mixture_of_experts_reports_its_active_parameters(client) -> None:
    body = {"architecture": "huggingface", "config": {"preset": "mixtral-8x7b"}, "input": {"shape": [256]}}
    report = client.post("/api/summary", json=body).json()
    totals = report["totals"]
    assert totals["params"] == 46_702_792_704
    # Mixtral's own figure: about 12.9B used per token (2 of 8 experts of 176,160,768 parameters, 32 layers).
    assert totals["active_params"] == 46_702_792_704 - 32 * 6 * 176_160_768
    assert any(note.startswith("Mixture of experts") for note in report["notes"])
    moe = next(row for row in report["layers"] if row["type"] == "MixtralSparseMoeBlock")
    assert any("top 2" in line for line in moe["explain"])


def test_remote_code_is_refused_by_the_api(client) -> None:
    config = json.loads((CONFIG_DIR / "qwen2.5-7b.json").read_text())
    config["auto_map"] = {"AutoModelForCausalLM": "modeling_evil.Model"}
    response = client.post("/api/summary", json={"architecture": "huggingface", "config": {"hf_config": config}})
    assert response.status_code == 422
    body = response.json()
    assert body["field"] == "config.hf_config"
    assert "remote code" in body["detail"] and "qwen2" in body["detail"]


def test_unknown_model_type_is_422_and_names_it(client) -> None:
    response = client.post(
        "/api/summary", json={"architecture": "huggingface", "config": {"hf_config": {"model_type": "llamma"}}}
    )
    assert response.status_code == 422
    assert "'llamma'" in response.json()["detail"] and "llama" in response.json()["detail"]


def test_memory_csv_and_compare(client) -> None:
    gpt2 = {"architecture": "huggingface", "config": {"preset": "gpt2"}, "input": {"batch_size": 2, "shape": [128]}}
    memory = client.post("/api/memory", json={**gpt2, "precision": "bf16", "optimizer": "adamw"})
    assert memory.status_code == 200, memory.text[:300]
    assert memory.json()["breakdown"]["weights"] == 124_439_808 * 2  # bf16
    rows = list(csv.DictReader(io.StringIO(client.post("/api/summary?format=csv", json=gpt2).text)))
    assert sum(int(r["params"]) for r in rows) == 124_439_808
    bert = {"architecture": "huggingface", "config": {"preset": "bert-base"}, "input": {"shape": [128]}}
    compared = client.post("/api/compare", json={"selections": [gpt2, bert]})
    assert compared.status_code == 200, compared.text[:300]
    assert [e["totals"]["params"] for e in compared.json()["entries"]] == [124_439_808, 109_482_240]


def test_the_family_is_described_with_its_presets(client) -> None:
    described = client.get("/api/architectures/huggingface").json()
    assert {p["name"] for p in described["presets"]} >= {"llama-3.1-8b", "mixtral-8x7b", "gemma-2-9b"}
    assert described["config_schema"]["properties"]["hf_config"]["x-editor"] == "config-file"
