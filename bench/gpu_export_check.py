"""GPU check of quantized export and of serving the result: bitsandbytes 4/8-bit through `kubetune export`.

Offline: builds a small random Llama locally, exports it with ``export_quantization_method: bnb`` at 4 and 8 bits,
then loads each export in the hf engine and generates. Prints sizes and timings. Needs a CUDA GPU and
bitsandbytes (GPTQ and AWQ additionally need gptqmodel / llmcompressor, checked the same way when installed).

    python bench/gpu_export_check.py
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _size_mb(directory: Path) -> float:
    return sum(p.stat().st_size for p in directory.glob("*.safetensors")) / 1e6


async def _generate(engine, prompt: list[int]) -> str:
    from kubetune.serve.engine import GenerationRequest, SamplingParams

    text = ""
    async for delta in engine.generate(GenerationRequest(prompt, SamplingParams(max_tokens=16, temperature=0.0))):
        text += delta.text
    return text


def main() -> int:
    from kubetune.config.export_args import ExportConfig
    from kubetune.config.serve_args import ServeConfig
    from kubetune.export.pipeline import run_export
    from kubetune.model.tiny import build_tiny_model
    from kubetune.serve.engine.hf_load import load_hf_engine

    with tempfile.TemporaryDirectory() as tmp:
        base = build_tiny_model(Path(tmp) / "base", "llama", hidden_size=512, layers=4, heads=8, kv_heads=2,
                                intermediate_size=1024)
        print(f"base model: {_size_mb(base):.1f} MB fp32")
        for bits in (4, 8):
            out = Path(tmp) / f"bnb{bits}"
            start = time.perf_counter()
            manifest = run_export(ExportConfig(model_name_or_path=str(base), export_dir=str(out),
                                               infer_dtype="bfloat16", export_quantization_bit=bits,
                                               export_quantization_method="bnb"))
            took = time.perf_counter() - start
            assert manifest.quantization and manifest.quantization.bits == bits
            engine = load_hf_engine(ServeConfig(model_name_or_path=str(out)))
            try:
                text = asyncio.run(_generate(engine, [83, 356, 122, 534, 264]))
            finally:
                engine.close()
            print(f"bnb {bits}-bit export: {took:.1f}s, {_size_mb(out):.1f} MB, served text: {text!r}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "runtime"))
    sys.exit(main())
