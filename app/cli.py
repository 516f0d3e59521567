"""The ``layerscope`` command: the engine's reports in a terminal.

    layerscope list
    layerscope summary alexnet --batch 2
    layerscope summary resnet --set depth=50 --input-size 3,224,224 --json
    layerscope summary transformer --input 2x10:int64 --input 2x7:int64
    layerscope memory gpt --preset gpt2 --batch 8 --optimizer adamw --precision amp-bf16
    layerscope summary huggingface --preset llama-3.1-8b --input-size 4096
    layerscope memory huggingface --hf-config path/to/config.json --precision bf16
    layerscope recipes qlora-llama-3.1-8b
    layerscope features alexnet --sample cat --out maps/
    layerscope attention gpt --preset nano --weights trained --text "Attention is all you need."
    layerscope serve --port 8000

Bad input exits with status 2 and a one-line message on stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

import models

from .engine import EngineError, estimate_memory, summarize, trace_graph
from .engine.choices import DTYPES, INPUT_DTYPES, KV_CACHE_DTYPES, PRECISIONS
from .engine.errors import ConfigError, UnknownArchitectureError, UnknownPresetError
from .engine.gpus import DEFAULT_GPU, GPUS
from .engine.step import STEP_FIELDS, Adapter, Quantization, Step, StepFields
from .engine.tracing.selection import TensorSpec, inputs_from_specs
from .render.csv import memory_csv, summary_csv
from .render.graph import graph_dot, graph_text
from .render.table import attention_table, feature_maps_table, memory_table, simple_table, summary_table
from .render.units import format_bytes, format_count
from .settings import get_settings

USER_ERRORS = (EngineError, ConfigError, UnknownArchitectureError, UnknownPresetError)


class UsageError(Exception):
    """A command-line value that cannot be parsed."""


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr (and exit status 2), like every other error."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"layerscope: error: {message} (see: {self.prog} --help)\n")


def parse_assignments(items: Sequence[str]) -> dict[str, Any]:
    """``["depth=50", "hidden=[512,256]", "bias=false"]`` -> config dict; values read as JSON when they parse."""
    config: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--set expects key=value, got {item!r}")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        config[key.strip()] = value
    return config


def parse_size(text: str | None) -> tuple[int, ...] | None:
    """'3,224,224' or '3x224x224' -> (3, 224, 224)."""
    if text is None:
        return None
    parts = text.replace("x", ",").split(",")
    try:
        return tuple(int(p) for p in parts if p.strip())
    except ValueError:
        raise UsageError(f"--input-size expects integers like 3,224,224, got {text!r}") from None


def parse_input(text: str) -> TensorSpec:
    """'2x3x224x224', 'input_ids=4x512:int64' -> a tensor spec (batch first; float32 unless a dtype is given)."""
    name, sep, rest = text.partition("=")
    if not sep:
        name, rest = "", text
    shape_text, _, dtype = rest.partition(":")
    try:
        shape = tuple(int(p) for p in shape_text.replace("x", ",").split(",") if p.strip())
    except ValueError:
        raise UsageError(f"--input expects [NAME=]SHAPE[:DTYPE] like input_ids=4x512:int64, got {text!r}") from None
    if dtype and dtype not in INPUT_DTYPES:
        raise UsageError(f"--input dtype must be one of {', '.join(INPUT_DTYPES)}, got {dtype!r}")
    return TensorSpec(shape, dtype or "float32", name.strip() or None)


def _inputs(args: argparse.Namespace) -> dict[str, Any]:
    """input_size, or input_data from --input specs (meta tensors)."""
    if args.inputs:
        if args.input_size:
            raise UsageError("give --input-size or --input, not both")
        return {"input_size": None, "input_data": inputs_from_specs([parse_input(t) for t in args.inputs])}
    return {"input_size": parse_size(args.input_size)}


def _selection_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("architecture", help="a name from `layerscope list`")
    parser.add_argument(
        "--set",
        dest="assignments",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="config field, repeatable: --set depth=50 --set hidden=[512,256]",
    )
    parser.add_argument("--preset", help="start from a named preset (see `layerscope list`)")
    parser.add_argument(
        "--hf-config",
        metavar="PATH",
        help="a Hugging Face config.json (for the huggingface family; pick the head with --set head=causal-lm)",
    )
    parser.add_argument("--batch", type=int, default=1, help="batch size (default 1)")
    parser.add_argument("--input-size", help="one sample's shape, e.g. 3,224,224 (tokens: T; encoder-decoder: S,T)")
    parser.add_argument(
        "--input",
        dest="inputs",
        action="append",
        default=[],
        metavar="[NAME=]SHAPE[:DTYPE]",
        help="instead of --input-size, each forward argument, batch first, repeatable: --input 2x10:int64, "
        "--input attention_mask=4x512:int64",
    )
    parser.add_argument("--dtype", choices=list(DTYPES), help="parameter dtype (default float32)")


def _config(args: argparse.Namespace) -> dict[str, Any]:
    config = parse_assignments(args.assignments)
    if args.preset:
        config["preset"] = args.preset
    if getattr(args, "hf_config", None):
        config["hf_config"] = _read_json(args.hf_config, "--hf-config")
    return config


def _read_json(path: str, option: str) -> Any:
    """A JSON file, or a one-line error naming the option (read as data: nothing in it is executed)."""
    try:
        return json.loads(Path(path).read_text())
    except OSError as exc:
        raise UsageError(f"{option}: cannot read {path}: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise UsageError(f"{option}: {path} is not JSON: {exc}") from None


def cmd_list(args: argparse.Namespace) -> int:
    rows = []
    for name in models.list_architectures():
        arch = models.get_architecture(name)
        rows.append([name, arch.title, format_count(arch.default_params), ", ".join(p.name for p in arch.presets)])
    if args.json:
        print(json.dumps([models.get_architecture(n).describe() for n in models.list_architectures()], indent=2))
    else:
        print(simple_table(["Name", "Architecture", "Default params", "Presets"], rows, {2}))
    return 0


def cmd_summary(args: argparse.Namespace) -> int:
    report = summarize(args.architecture, _config(args), batch_size=args.batch, dtype=args.dtype, **_inputs(args))
    if args.json:
        print(report.model_dump_json(indent=2))
    elif args.csv:
        sys.stdout.write(summary_csv(report))
    else:
        print(summary_table(report, max_depth=args.depth))
    return 0


def cmd_graph(args: argparse.Namespace) -> int:
    report = trace_graph(args.architecture, _config(args), batch_size=args.batch, dtype=args.dtype, **_inputs(args))
    if args.json:
        print(report.model_dump_json(indent=2))
    elif args.dot:
        sys.stdout.write(graph_dot(report))
    else:
        sys.stdout.write(graph_text(report))
    return 0


def cmd_memory(args: argparse.Namespace) -> int:
    report = estimate_memory(
        args.architecture,
        _config(args),
        batch_size=args.batch,
        measure=args.measure,
        device=args.device,
        step=_step(args),
        **_inputs(args),
    )
    if args.json:
        print(report.model_dump_json(indent=2))
    elif args.csv:
        sys.stdout.write(memory_csv(report))
    else:
        print(memory_table(report))
    return 0


def cmd_recipes(args: argparse.Namespace) -> int:
    """The fine-tuning recipes, or one of them estimated."""
    from .engine.recipes import RECIPES, get_recipe

    if args.name is None:
        rows = [[r.name, r.label, f"{r.batch_size} x {r.tokens:,} tokens"] for r in RECIPES.values()]
        print(simple_table(["recipe", "setup", "batch"], rows))
        return 0
    recipe = get_recipe(args.name)
    report = estimate_memory(
        recipe.architecture,
        dict(recipe.config),
        input_size=(recipe.tokens,),
        batch_size=recipe.batch_size,
        step=recipe.checked_step(),
    )
    if args.json:
        print(report.model_dump_json(indent=2))
    else:
        print(f"{recipe.label}: {recipe.source}")
        print(memory_table(report))
    return 0


def _step(args: argparse.Namespace) -> Step:
    """The step the flags describe (memory, max-batch and step-time share them), checked."""
    options = {name: getattr(args, name) for name in STEP_FIELDS if hasattr(args, name)}
    return Step.of(**options, adapter=_adapter(args))


def cmd_max_batch(args: argparse.Namespace) -> int:
    from .engine.sizing import max_batch

    if args.inputs:
        raise UsageError("max-batch chooses the batch size: give --input-size, not --input")
    report = max_batch(
        args.architecture,
        _config(args),
        gpu=args.gpu,
        step=_step(args),
        **_inputs(args),
    )
    if args.json:
        print(report.model_dump_json(indent=2))
        return 0
    print(
        f"Largest batch on {args.gpu}: {report.batch_size:,}  (usable {format_bytes(report.usable_bytes)}; peak "
        f"{format_bytes(report.peak_bytes or 0)} at it, {format_bytes(report.next_peak_bytes or 0)} at one more; "
        f"{report.estimates} estimates)"
    )
    return 0


def cmd_max_context(args: argparse.Namespace) -> int:
    from .engine.sizing import max_context

    if args.inputs or args.input_size:
        raise UsageError("max-context chooses the sequence length: give --batch, not --input-size or --input")
    report = max_context(args.architecture, _config(args), gpu=args.gpu, batch_size=args.batch, step=_step(args))
    if args.json:
        print(report.model_dump_json(indent=2))
        return 0
    what = f"{report.prompt_tokens:,} prompt + {report.new_tokens:,} new tokens" if report.new_tokens else "tokens"
    print(
        f"Longest context on {args.gpu} at batch {report.batch_size:,}: {report.context_tokens:,} ({what}"
        f"{'; the config' + chr(39) + 's limit' if report.limited_by_config else ''})  (usable "
        f"{format_bytes(report.usable_bytes)}; peak {format_bytes(report.peak_bytes or 0)} at it, "
        f"{format_bytes(report.next_peak_bytes or 0)} at one more; {report.estimates} estimates)"
    )
    return 0


def cmd_serving(args: argparse.Namespace) -> int:
    from .engine.sizing import serving_capacity

    report = serving_capacity(
        args.architecture,
        _config(args),
        gpu=args.gpu,
        gpu_memory_utilization=args.gpu_memory_utilization,
        block_size=args.block_size,
        max_num_batched_tokens=args.max_num_batched_tokens,
        prompt_tokens=args.prompt_tokens,
        output_tokens=args.output_tokens,
        kv_cache_dtype=args.kv_cache_dtype,
        precision=args.precision,
        quantization={"method": args.quantization} if args.quantization else None,
    )
    if args.json:
        print(report.model_dump_json(indent=2))
        return 0
    print(
        f"{args.architecture} on {args.gpu} at {report.gpu_memory_utilization:.0%}: {report.kv_tokens:,} tokens of KV "
        f"cache ({report.kv_blocks:,} blocks of {report.block_size}); {report.max_concurrent_requests:,} concurrent "
        f"{report.tokens_per_request:,}-token requests (weights {format_bytes(report.weight_bytes)}, prefill "
        f"activations {format_bytes(report.activation_peak_bytes)}); estimated TTFT "
        f"{report.ttft_seconds * 1e3:,.0f} ms, TPOT {report.tpot_seconds * 1e3:,.1f} ms"
    )
    return 0


def cmd_step_time(args: argparse.Namespace) -> int:
    from .engine.sizing import estimate_step_time

    report = estimate_step_time(
        args.architecture,
        _config(args),
        gpu=args.gpu,
        utilization=args.utilization,
        bandwidth_efficiency=args.bandwidth_efficiency,
        batch_size=args.batch,
        step=_step(args),
        **_inputs(args),
    )
    if args.json:
        print(report.model_dump_json(indent=2))
        return 0
    lines = [
        f"Estimated time on {args.gpu} (a roofline, not a measurement): {report.seconds * 1000:,.2f} ms "
        f"({report.bound}-bound)"
    ]
    if report.tokens_per_second is not None:
        lines.append(
            f"  prefill {report.prefill_seconds * 1000:,.2f} ms, decode {report.decode_seconds_per_token * 1000:,.3f}"
            f" ms per token, {report.tokens_per_second:,.0f} tokens/s for the batch"
        )
    lines += [f"  assumes: {a}" for a in report.assumptions]
    print("\n".join(lines))
    return 0


def cmd_features(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .engine.live.runs import feature_maps

    image = Path(args.image).read_bytes() if args.image else None
    layers = [p.strip() for p in args.layers.split(",") if p.strip()] if args.layers else None
    report = feature_maps(
        args.architecture,
        _config(args),
        image=image,
        sample=args.sample,
        layers=layers,
        weights=args.weights,
        device=args.device,
    )
    if args.out:
        _write_grids(report, Path(args.out))
    print(report.model_dump_json(indent=2) if args.json else feature_maps_table(report))
    return 0


def _write_grids(report: Any, folder: Any) -> None:
    import base64

    folder.mkdir(parents=True, exist_ok=True)
    for layer in report.layers:
        data = base64.b64decode(layer.grid_png.split(",", 1)[1])
        (folder / f"{layer.path.replace('.', '_')}.png").write_bytes(data)


def cmd_attention(args: argparse.Namespace) -> int:
    from .engine.live.runs import attention

    report = attention(args.architecture, _config(args), text=args.text, weights=args.weights, device=args.device)
    print(report.model_dump_json(indent=2) if args.json else attention_table(report))
    return 0


def serve_options(args: argparse.Namespace) -> dict[str, Any]:
    """uvicorn's options: command-line flags first, then LAYERSCOPE_* settings."""
    settings = get_settings()
    return {
        "host": args.host or settings.host,
        "port": args.port or settings.port,
        "workers": args.workers or settings.workers,
        "log_level": settings.log_level,
        "timeout_graceful_shutdown": settings.graceful_shutdown_s,
        "timeout_keep_alive": 5,
        "access_log": False,  # the app writes its own JSON access lines
        "proxy_headers": True,
    }


def cmd_serve(args: argparse.Namespace) -> int:
    import signal

    import uvicorn

    # uvicorn stops gracefully on SIGTERM, then re-raises it to the handler it found: make that one a no-op,
    # so a graceful stop exits with status 0 (engine processes are stopped at exit).
    signal.signal(signal.SIGTERM, lambda signum, frame: None)
    uvicorn.run("app.main:app", **serve_options(args))
    return 0


def _step_args(parser: argparse.ArgumentParser, gpu: bool = False) -> None:
    """One flag per field of the engine's Step (--mode, --optimizer, --precision, --new-tokens, --checkpointing,
    --gpus, --sharding...), with its choices and description; and, for sizing, the GPU."""
    for name, field in StepFields.model_fields.items():
        if name == "dtype":  # the selection's own --dtype
            continue
        if name == "adapter":  # a model of its own: the --lora-* flags below
            _adapter_args(parser)
            continue
        flag = "--" + name.replace("_", "-")
        help_text = (field.description or "").replace("%", "%%")
        choices = _literal_choices(field.annotation)
        if field.annotation is bool:
            parser.add_argument(flag, action="store_true", help=help_text)
        elif choices:
            parser.add_argument(flag, choices=choices, default=field.default, help=help_text)
        else:
            parser.add_argument(flag, type=int, default=field.default, help=help_text)
    if gpu:
        parser.add_argument("--gpu", choices=list(GPUS), default=DEFAULT_GPU, help="a GPU of the catalog")


def _adapter_args(parser: argparse.ArgumentParser) -> None:
    fields = Adapter.model_fields
    parser.add_argument("--lora-r", type=int, help="fine-tune with a LoRA adapter of this rank (PEFT); base frozen")
    parser.add_argument(
        "--lora-targets",
        help="comma-separated linear layers to adapt, e.g. q_proj,v_proj (default all-linear: every linear layer "
        "but the output head)",
    )
    parser.add_argument("--lora-alpha", type=float, help=f"{fields['alpha'].description} (default 2 x r)")
    parser.add_argument("--lora-dropout", type=float, default=0.0, help=fields["dropout"].description)
    parser.add_argument("--dora", action="store_true", help="DoRA (weight-decomposed LoRA) instead of LoRA")


def _adapter(args: argparse.Namespace) -> dict[str, Any] | None:
    """The adapter the --lora-* flags describe (None without --lora-r)."""
    if getattr(args, "lora_r", None) is None:
        if getattr(args, "lora_targets", None) or getattr(args, "dora", False):
            raise UsageError("--lora-targets and --dora need --lora-r (the adapter's rank)")
        return None
    targets = args.lora_targets
    return {
        "kind": "dora" if args.dora else "lora",
        "r": args.lora_r,
        "alpha": args.lora_alpha if args.lora_alpha is not None else 2 * args.lora_r,
        "target_modules": "all-linear" if not targets else [t.strip() for t in targets.split(",") if t.strip()],
        "dropout": args.lora_dropout,
    }


def _literal_choices(annotation: Any) -> list[str] | None:
    """The values of a Literal (or an optional Literal) annotation."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) is typing.Literal:
        return list(args)
    inner = [a for a in args if typing.get_origin(a) is typing.Literal]
    return list(typing.get_args(inner[0])) if inner else None


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="layerscope", description="Explore neural-network architectures.")
    commands = parser.add_subparsers(dest="command", required=True)

    listing = commands.add_parser("list", help="the architectures and their presets")
    listing.add_argument("--json", action="store_true", help="full descriptions, config schemas included")
    listing.set_defaults(run=cmd_list)

    summary = commands.add_parser("summary", help="per-layer shapes, parameters and FLOPs")
    _selection_args(summary)
    out = summary.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="the full report as JSON")
    out.add_argument("--csv", action="store_true", help="the layer rows as CSV")
    summary.add_argument("--depth", type=int, help="show the tree down to this depth")
    summary.set_defaults(run=cmd_summary)

    graph = commands.add_parser("graph", help="the model as a graph: module calls, the ops joining them, tensors")
    _selection_args(graph)
    drawn = graph.add_mutually_exclusive_group()
    drawn.add_argument("--json", action="store_true", help="nodes and edges as JSON (the API's answer)")
    drawn.add_argument("--dot", action="store_true", help="Graphviz DOT: layerscope graph resnet --dot | dot -Tsvg")
    graph.set_defaults(run=cmd_graph)

    memory = commands.add_parser("memory", help="peak memory of a training step or an inference pass")
    _selection_args(memory)
    memory.add_argument("--device", help="cpu or cuda (default: cuda when there is a GPU)")
    memory.add_argument("--measure", action="store_true", help="also run the step for real and compare")
    _step_args(memory)
    out = memory.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="the full report as JSON")
    out.add_argument("--csv", action="store_true", help="the per-layer rows as CSV")
    memory.set_defaults(run=cmd_memory)

    recipes = commands.add_parser("recipes", help="fine-tuning recipes (QLoRA, LoRA, 8-bit AdamW); one estimated")
    recipes.add_argument("name", nargs="?", help="a recipe to estimate (without it: the list)")
    recipes.add_argument("--json", action="store_true", help="the recipe's memory report as JSON")
    recipes.set_defaults(run=cmd_recipes)

    fitting = commands.add_parser("max-batch", help="the largest batch whose peak fits a GPU")
    _selection_args(fitting)
    _step_args(fitting, gpu=True)
    fitting.add_argument("--json", action="store_true", help="the full report as JSON")
    fitting.set_defaults(run=cmd_max_batch)

    longest = commands.add_parser("max-context", help="the longest context whose peak fits a GPU at a batch size")
    _selection_args(longest)
    _step_args(longest, gpu=True)
    longest.add_argument("--json", action="store_true", help="the full report as JSON")
    longest.set_defaults(run=cmd_max_context)

    serving = commands.add_parser("serving", help="KV-cache blocks and concurrent requests a GPU serves (vLLM)")
    _selection_args(serving)
    serving.add_argument("--gpu", choices=list(GPUS), default=DEFAULT_GPU, help="a GPU of the catalog")
    serving.add_argument("--precision", choices=list(PRECISIONS), default="bf16")
    serving.add_argument(
        "--quantization", choices=_literal_choices(Quantization.model_fields["method"].annotation), help="weights"
    )
    serving.add_argument("--gpu-memory-utilization", type=float, default=0.9)
    serving.add_argument("--block-size", type=int, default=16)
    serving.add_argument("--max-num-batched-tokens", type=int, default=2048)
    serving.add_argument("--prompt-tokens", type=int, default=1024)
    serving.add_argument("--output-tokens", type=int, default=1024)
    serving.add_argument("--kv-cache-dtype", choices=list(KV_CACHE_DTYPES), default="auto")
    serving.add_argument("--json", action="store_true", help="the full report as JSON")
    serving.set_defaults(run=cmd_serving)

    timing = commands.add_parser("step-time", help="a roofline estimate of a step's time on a GPU")
    _selection_args(timing)
    _step_args(timing, gpu=True)
    timing.add_argument("--utilization", type=float, default=0.4, help="share of the peak FLOP/s reached")
    timing.add_argument("--bandwidth-efficiency", type=float, default=0.8, help="share of the bandwidth reached")
    timing.add_argument("--json", action="store_true", help="the full report as JSON")
    timing.set_defaults(run=cmd_step_time)

    features = commands.add_parser("features", help="feature maps of a photograph, from a real forward pass")
    features.add_argument("architecture", help="an image model from `layerscope list`")
    features.add_argument("--set", dest="assignments", action="append", default=[], metavar="KEY=VALUE")
    features.add_argument("--preset")
    source = features.add_mutually_exclusive_group()
    source.add_argument("--image", help="an image file (PNG, JPEG...)")
    source.add_argument("--sample", help="a bundled sample: cat, coffee, astronaut, rocket (default cat)")
    features.add_argument("--layers", help="comma-separated module paths (default: the architecture's feature layers)")
    features.add_argument("--weights", default="random", help="random, trained, or torchvision:<file>")
    features.add_argument("--device", help="cpu or cuda (default: cuda when there is a GPU)")
    features.add_argument("--out", help="also write each layer's grid as a PNG into this folder")
    features.add_argument("--json", action="store_true", help="the full report as JSON")
    features.set_defaults(run=cmd_features)

    attention = commands.add_parser("attention", help="attention weights of a text, from a real forward pass")
    attention.add_argument("architecture", help="a model that reads text (gpt, transformer)")
    attention.add_argument("--set", dest="assignments", action="append", default=[], metavar="KEY=VALUE")
    attention.add_argument("--preset")
    attention.add_argument("--text", required=True, help="the text (64 tokens at most)")
    attention.add_argument("--weights", default="random", help="random, or trained when bundled")
    attention.add_argument("--device", help="cpu or cuda (default: cuda when there is a GPU)")
    attention.add_argument("--json", action="store_true", help="the full report as JSON")
    attention.set_defaults(run=cmd_attention)

    serve = commands.add_parser("serve", help="start the web app")
    serve.add_argument("--host", help="default: LAYERSCOPE_HOST, or 127.0.0.1")
    serve.add_argument("--port", type=int, help="default: LAYERSCOPE_PORT, or 8000")
    serve.add_argument("--workers", type=int, help="default: LAYERSCOPE_WORKERS, or 1")
    serve.set_defaults(run=cmd_serve)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except (UsageError, *USER_ERRORS) as exc:
        print(f"layerscope: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
