"""``candlecast finetune``: one fine-tune run for an asset class, with the gate's decision printed.

Exit status: 0 when an adapter was trained (promoted or not), 1 when there was not enough data, 2 when the
base model's weights are not available (nothing is trained) or an option is invalid, 3 when the adapter was
promoted in ``model_adapters`` but the adapters manifest could not be written (the model server does not see
it; ``--publish-only`` publishes it once the adapters directory is fixed).

``--publish-only`` trains nothing: it rewrites the manifest from ``model_adapters`` and tells the inference
service to load it.
"""

from __future__ import annotations

from typing import Annotated

import typer

from candlecast.cli_options import console

__all__ = ["finetune_cmd"]


def finetune_cmd(
    asset_class: Annotated[
        str | None, typer.Option("--asset-class", help="crypto, equity, fx, commodity or index.", show_default=False)
    ] = None,
    base: Annotated[str, typer.Option("--base", help="Base Kronos model (kronos-mini, kronos-small, ...).")] = (
        "kronos-small"
    ),
    epochs: Annotated[int | None, typer.Option(min=1, help="Default: finetune.epochs.")] = None,
    lora_rank: Annotated[int | None, typer.Option("--lora-rank", min=1, help="Default: finetune.lora_rank.")] = None,
    as_of: Annotated[
        str | None, typer.Option("--as-of", help="Train on data closed by this ISO time (naive = UTC); default now.")
    ] = None,
    timeframe: Annotated[
        list[str] | None, typer.Option("--timeframe", "-t", help="1h and/or 1d; default: finetune.timeframes.")
    ] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar with the loss.")] = True,
    publish_only: Annotated[
        bool,
        typer.Option(
            "--publish-only",
            help="Train nothing: rewrite the promoted-adapters manifest from model_adapters and tell the "
            "inference service.",
        ),
    ] = False,
) -> None:
    """Fine-tune a Kronos base model (LoRA + event projection) for one asset class; promote it if it beats
    the promoted adapter (or the base model) on the held-out period."""
    from candlecast.cli_options import parse_time
    from candlecast.config import get_settings
    from candlecast.errors import NotEnoughDataError, WeightsNotAvailableError
    from candlecast.jobs.finetune.promotion import ManifestNotWritten, publish_promoted, tell_inference_service
    from candlecast.jobs.finetune.run import load_base, run_finetune
    from candlecast.models.finetune.manifest import manifest_path
    from candlecast.store import connect

    settings = get_settings()
    if publish_only:
        with connect(settings, migrate=True) as engine:
            try:
                manifest = publish_promoted(settings, engine)
            except ManifestNotWritten as exc:
                console.print(f"[red]not published[/]: {exc}")
                raise typer.Exit(3) from None
        console.print(f"{manifest.count()} promoted adapter(s) published in {manifest_path(settings)}")
        told = tell_inference_service(settings, manifest)
        console.print(
            f"inference service at {settings.inference.url} "
            + ("reloaded its adapters" if told else "not reachable: it loads them at its next start")
        )
        return
    if not asset_class:
        raise typer.BadParameter("required (unless --publish-only)", param_hint="--asset-class")
    when = parse_time(as_of)
    for tf in timeframe or []:
        if tf not in ("1h", "1d"):
            raise typer.BadParameter(f"expected 1h or 1d, found {tf!r}", param_hint="--timeframe")
    try:
        checkpoint = load_base(settings, base)
    except WeightsNotAvailableError as exc:
        console.print(f"[red]not trained[/]: {exc}")
        raise typer.Exit(2) from None
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--base") from None
    with connect(settings, migrate=True) as engine:
        try:
            result = run_finetune(
                settings, engine, asset_class, base, as_of=when, epochs=epochs, lora_rank=lora_rank,
                timeframes=timeframe or None, progress=progress, base=checkpoint,
            )  # fmt: skip
        except NotEnoughDataError as exc:
            console.print(f"[yellow]not trained[/]: {exc}")
            raise typer.Exit(1) from None
        except ManifestNotWritten as exc:
            console.print(f"[red]promoted but not published[/]: {exc}")
            raise typer.Exit(3) from None
    training, data = result.metrics["training"], result.metrics["data"]
    console.print(
        f"[bold]{base} {asset_class}[/]: {data['train_windows']} training windows "
        f"({data['train_windows_with_events']} with events), {data['validation_windows']} validation windows "
        f"after {data['cutoff']}"
    )
    console.print(
        f"training loss {training['loss_before']:.4f} -> {training['loss_after']:.4f} in {training['steps']} steps "
        f"({training['windows_per_second']:.1f} windows/s)"
    )
    verdict = "[green]PROMOTED[/]" if result.promoted else "[yellow]NOT PROMOTED[/]"
    console.print(f"adapter #{result.adapter_id} in {result.path}: {verdict}")
    console.print(result.reason)
    if result.manifest is not None:
        console.print(f"published in {manifest_path(settings)} (the inference service loads it at its next start)")
