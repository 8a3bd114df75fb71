"""Kronos: exact checkpoint compatibility with the reference, KV-cached generation, sampling, threads.

Reference outputs come from tests/fixtures/kronos-reference (see its README): a small random tokenizer and
model saved by the reference code, its outputs on fixed inputs, and the published checkpoint layouts.
"""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file, save_file

from candlecast.models.kronos import (
    COLUMNS,
    TINY_MODEL_CONFIG,
    Kronos,
    KronosPredictor,
    KronosTokenizer,
    LayerCache,
    WeightsNotAvailableError,
    save_random_checkpoints,
)
from candlecast.models.kronos import _filter_logits as filter_logits

REFERENCE = Path(__file__).parents[1] / "fixtures" / "kronos-reference"
CASES = json.loads((REFERENCE / "cases.json").read_text())
PUBLISHED = json.loads((REFERENCE / "published-checkpoints.json").read_text())
MAX_CONTEXT = CASES["max_context"]  # 64


@pytest.fixture(scope="module", autouse=True)
def one_intra_op_thread() -> Any:
    """The test models are tiny: on a busy 2-core machine torch's thread pool makes them ~30x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def ref() -> dict[str, np.ndarray]:
    with np.load(REFERENCE / "cases.npz") as data:
        return {k: data[k] for k in data.files}


@pytest.fixture(scope="module")
def tokenizer() -> KronosTokenizer:
    return KronosTokenizer.from_pretrained(REFERENCE / "tokenizer")


@pytest.fixture(scope="module")
def model() -> Kronos:
    return Kronos.from_pretrained(REFERENCE / "model")


@pytest.fixture(scope="module")
def predictor(model: Kronos, tokenizer: KronosTokenizer) -> KronosPredictor:
    return KronosPredictor(model, tokenizer, device="cpu", max_context=MAX_CONTEXT)


@pytest.fixture(scope="module")
def candles() -> pd.DataFrame:
    return pd.read_csv(REFERENCE / "regression_input.csv", parse_dates=["timestamps"])


def assert_close(actual: torch.Tensor | np.ndarray, expected: np.ndarray, rtol: float) -> None:
    """Within ``rtol`` of the largest reference magnitude (logits and values cross zero)."""
    actual = actual.detach().numpy() if isinstance(actual, torch.Tensor) else actual
    assert actual.shape == expected.shape
    scale = np.abs(expected).max()
    np.testing.assert_array_less(np.abs(actual - expected).max(), rtol * scale)


def window(candles: pd.DataFrame, start: int, length: int, pred_len: int) -> tuple[pd.DataFrame, pd.Series, Any]:
    """History rows [start, start + length) and the timestamps of the pred_len candles after them."""
    history = candles.iloc[start : start + length]
    future = candles["timestamps"].iloc[start + length : start + length + pred_len]
    return history[list(COLUMNS)].reset_index(drop=True), history["timestamps"], future


def series_set(candles: pd.DataFrame, lengths: list[int], pred_len: int) -> tuple[list[Any], list[Any], list[Any]]:
    parts = [window(candles, 200 * i, n, pred_len) for i, n in enumerate(lengths)]
    return [p[0] for p in parts], [p[1] for p in parts], [p[2] for p in parts]


# --- loading and saving ---------------------------------------------------------------------------------


def test_fixture_checkpoints_load_strictly_in_eval_mode(model: Kronos, tokenizer: KronosTokenizer) -> None:
    assert not model.training and not tokenizer.training
    assert model.config == CASES["model_config"]
    assert tokenizer.config == CASES["tokenizer_config"]
    assert len(tokenizer.encoder) == CASES["tokenizer_config"]["n_enc_layers"] - 1


def test_save_pretrained_rewrites_the_reference_files_byte_for_byte(
    model: Kronos, tokenizer: KronosTokenizer, tmp_path: Path
) -> None:
    for name, module in (("model", model), ("tokenizer", tokenizer)):
        module.save_pretrained(tmp_path / name)
        for filename in ("config.json", "model.safetensors"):
            assert (tmp_path / name / filename).read_bytes() == (REFERENCE / name / filename).read_bytes()


def _edited_copy(tmp_path: Path, edit: Any) -> Path:
    folder = tmp_path / "edited"
    shutil.copytree(REFERENCE / "model", folder)
    state = load_file(folder / "model.safetensors")
    edit(state)
    save_file(state, folder / "model.safetensors")
    return folder


def test_loading_refuses_a_misnamed_key(tmp_path: Path) -> None:
    folder = _edited_copy(tmp_path, lambda s: s.__setitem__("head.proj_1.weight", s.pop("head.proj_s1.weight")))
    with pytest.raises(ValueError, match=r"missing keys \['head.proj_s1.weight'\].*unexpected keys \['head.proj_1"):
        Kronos.from_pretrained(folder)


def test_loading_refuses_a_missing_weight(tmp_path: Path) -> None:
    folder = _edited_copy(tmp_path, lambda s: s.pop("transformer.1.ffn.w2.weight"))
    with pytest.raises(ValueError, match="transformer.1.ffn.w2.weight"):
        Kronos.from_pretrained(folder)


def test_loading_refuses_a_tensor_of_the_wrong_shape(tmp_path: Path) -> None:
    folder = _edited_copy(tmp_path, lambda s: s.__setitem__("norm.weight", torch.ones(3)))
    with pytest.raises(ValueError, match="norm.weight: file \\(3,\\), model \\(64,\\)"):
        Kronos.from_pretrained(folder)


def test_loading_tolerates_absent_recomputable_buffers(
    tmp_path: Path, model: Kronos, tokenizer: KronosTokenizer, ref: dict[str, np.ndarray]
) -> None:
    def drop_buffers(state: dict[str, torch.Tensor]) -> None:
        for key in [k for k in state if k.endswith(("rotary.inv_freq", "bsq.basis", "bsq.group_basis"))]:
            del state[key]

    model_dir = _edited_copy(tmp_path, drop_buffers)
    tok_dir = tmp_path / "tok"
    shutil.copytree(REFERENCE / "tokenizer", tok_dir)
    tok_state = load_file(tok_dir / "model.safetensors")
    drop_buffers(tok_state)
    save_file(tok_state, tok_dir / "model.safetensors")
    rebuilt_model, rebuilt_tok = Kronos.from_pretrained(model_dir), KronosTokenizer.from_pretrained(tok_dir)
    for rebuilt, original in ((rebuilt_model, model), (rebuilt_tok, tokenizer)):
        for key, value in original.state_dict().items():
            assert torch.equal(rebuilt.state_dict()[key], value), key
    with torch.no_grad():
        s1, s2 = rebuilt_tok.encode(torch.from_numpy(ref["x"]), half=True)
        assert_close(rebuilt_model.decode_s1(s1, s2, torch.from_numpy(ref["stamp"]))[0], ref["s1_logits"], 1e-5)


def test_loading_refuses_a_config_with_unknown_fields(tmp_path: Path) -> None:
    folder = tmp_path / "odd"
    shutil.copytree(REFERENCE / "model", folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "n_experts": 4}))
    with pytest.raises(ValueError, match="n_experts"):
        Kronos.from_pretrained(folder)


def test_hub_id_without_network_or_cache_says_the_weights_are_not_available(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(WeightsNotAvailableError, match="NeoQuasar/Kronos-small.*not available"):
        Kronos.from_pretrained("NeoQuasar/Kronos-small", revision="main", cache_dir=tmp_path)


def test_hub_id_is_served_from_the_local_hub_cache_when_offline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    commit = "901c26c1332695a2a8f243eb2f37243a37bea320"
    repo = tmp_path / "models--NeoQuasar--Kronos-small"  # the hub cache layout
    shutil.copytree(REFERENCE / "model", repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    for revision in (None, commit):
        loaded = Kronos.from_pretrained("NeoQuasar/Kronos-small", revision=revision, cache_dir=tmp_path)
        assert loaded.config == CASES["model_config"]


def test_a_local_path_that_does_not_exist_is_not_taken_for_a_hub_id(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="neither a checkpoint folder nor a hub id"):
        Kronos.from_pretrained(tmp_path / "nowhere")


@pytest.mark.parametrize("name", list(PUBLISHED))
def test_published_configs_build_to_the_published_size(name: str, tmp_path: Path) -> None:
    entry = PUBLISHED[name]
    cls = Kronos if entry["kind"] == "model" else KronosTokenizer
    module = cls(**entry["config"])
    assert module.num_parameters() == entry["parameters"]
    module.save_pretrained(tmp_path)
    del module
    assert (tmp_path / "model.safetensors").stat().st_size == entry["safetensors_bytes"]
    assert json.loads((tmp_path / "config.json").read_text()) == entry["config"]
    (tmp_path / "model.safetensors").unlink()  # Kronos-base is 409 MB


# --- numerical equality with the reference ----------------------------------------------------------------


def test_encode_gives_exactly_the_reference_token_ids(tokenizer: KronosTokenizer, ref: dict[str, np.ndarray]) -> None:
    x = torch.from_numpy(ref["x"])
    with torch.no_grad():
        s1, s2 = tokenizer.encode(x, half=True)
        full = tokenizer.encode(x, half=False)
    np.testing.assert_array_equal(s1.numpy(), ref["s1"])
    np.testing.assert_array_equal(s2.numpy(), ref["s2"])
    np.testing.assert_array_equal(full.numpy(), ref["full_idx"])


def test_tokenizer_decode_and_training_forward_match_the_reference(
    tokenizer: KronosTokenizer, ref: dict[str, np.ndarray]
) -> None:
    with torch.no_grad():
        decoded = tokenizer.decode([torch.from_numpy(ref["s1"]), torch.from_numpy(ref["s2"])], half=True)
        (z_pre, z), loss, quantized, ids = tokenizer(torch.from_numpy(ref["x"]))
    assert_close(decoded, ref["decoded"], 1e-5)
    assert_close(z_pre, ref["tok_forward_pre"], 1e-5)
    assert_close(z, ref["tok_forward_full"], 1e-5)
    np.testing.assert_array_equal(ids.numpy(), ref["full_idx"])
    assert torch.allclose(quantized.abs(), torch.full_like(quantized, 20**-0.5))
    assert torch.isfinite(loss)


def test_model_logits_and_context_match_the_reference(model: Kronos, ref: dict[str, np.ndarray]) -> None:
    s1, s2, stamp = (torch.from_numpy(ref[k]) for k in ("s1", "s2", "stamp"))
    with torch.no_grad():
        s1_logits, context = model.decode_s1(s1, s2, stamp)
        s2_last = model.decode_s2(context, torch.from_numpy(ref["s1_next"]))  # query length 1
        s2_full = model.decode_s2(context, s1)  # query length = context length
        tf_s1, tf_s2 = model(s1, s2, stamp, use_teacher_forcing=True, s1_targets=s1)
        no_stamp = model.decode_s1(s1, s2, None)[0]
    assert_close(s1_logits, ref["s1_logits"], 1e-5)
    assert_close(context, ref["context"], 1e-5)
    np.testing.assert_array_equal(s1_logits[:, -1:].argmax(-1).numpy(), ref["s1_next"])
    assert_close(s2_last, ref["s2_logits_last"], 1e-5)
    assert_close(s2_full, ref["s2_logits_full"], 1e-5)
    assert_close(tf_s1, ref["tf_s1_logits"], 1e-5)
    assert_close(tf_s2, ref["tf_s2_logits"], 1e-5)
    assert_close(no_stamp, ref["nostamp_s1_logits"], 1e-5)


@pytest.mark.parametrize("case", CASES["greedy_cases"], ids=lambda c: c["name"])
@pytest.mark.parametrize("use_kv_cache", [True, False], ids=["cached", "recompute"])
def test_greedy_prediction_matches_the_reference(
    predictor: KronosPredictor,
    candles: pd.DataFrame,
    ref: dict[str, np.ndarray],
    case: dict[str, Any],
    use_kv_cache: bool,
) -> None:
    # greedy0 stays inside the window; greedy1 (60 + 10 > 64) slides it, and those steps are recomputed
    lo, hi = case["input_csv_rows"]
    history = candles.iloc[lo:hi]
    future = pd.to_datetime(pd.Series(case["future_timestamps"]))
    out = predictor.predict(
        history[list(COLUMNS)], history["timestamps"], future, case["pred_len"],
        T=1.0, top_k=1, top_p=1.0, sample_count=1, use_kv_cache=use_kv_cache,
    )  # fmt: skip
    assert list(out.columns) == list(COLUMNS)
    assert list(out.index) == list(future)
    np.testing.assert_allclose(out.to_numpy(), ref[f"{case['name']}_pred"], rtol=1e-4)


def test_predict_accepts_timestamps_as_series_index_or_array(predictor: KronosPredictor, candles: pd.DataFrame) -> None:
    df, x_ts, y_ts = window(candles, 0, 40, 5)
    outs = [
        predictor.predict(df, x, y, 5, top_k=1)
        for x, y in [(x_ts, y_ts), (pd.DatetimeIndex(x_ts), pd.DatetimeIndex(y_ts)), (x_ts.to_numpy(), y_ts.to_numpy())]
    ]
    for out in outs[1:]:
        pd.testing.assert_frame_equal(out, outs[0], check_names=False)  # a Series lends its name


def test_predict_batch_takes_histories_of_different_lengths(predictor: KronosPredictor, candles: pd.DataFrame) -> None:
    dfs, xs, ys = series_set(candles, [50, 20, 35], pred_len=6)
    batched = predictor.predict_batch(dfs, xs, ys, 6, top_k=1)
    for df, x, y, out in zip(dfs, xs, ys, batched, strict=True):
        np.testing.assert_allclose(out.to_numpy(), predictor.predict(df, x, y, 6, top_k=1).to_numpy(), rtol=1e-5)


def test_missing_volume_and_amount_are_filled_like_the_reference(
    predictor: KronosPredictor, candles: pd.DataFrame
) -> None:
    df, x_ts, y_ts = window(candles, 0, 40, 5)
    prices = df[["open", "high", "low", "close"]]
    no_volume = predictor.predict(prices, x_ts, y_ts, 5, top_k=1)
    zeros = predictor.predict(prices.assign(volume=0.0, amount=0.0), x_ts, y_ts, 5, top_k=1)
    pd.testing.assert_frame_equal(no_volume, zeros)
    no_amount = predictor.predict(df.drop(columns="amount"), x_ts, y_ts, 5, top_k=1)
    derived = predictor.predict(df.assign(amount=df["volume"] * prices.mean(axis=1)), x_ts, y_ts, 5, top_k=1)
    pd.testing.assert_frame_equal(no_amount, derived)


def test_padded_positions_do_not_change_the_real_ones(model: Kronos, ref: dict[str, np.ndarray]) -> None:
    s1, s2, stamp = (torch.from_numpy(ref[k][:1, 10:]) for k in ("s1", "s2", "stamp"))  # (1, 30)
    pad = 7
    padded = [torch.cat([torch.zeros_like(t[:, :pad]), t], dim=1) for t in (s1, s2, stamp)]
    mask = torch.zeros(1, 30 + pad, dtype=torch.bool)
    mask[:, :pad] = True  # True marks padding, as in the reference
    with torch.no_grad():
        plain = model.decode_s1(s1, s2, stamp)[0]
        left_padded = model.decode_s1(*padded, padding_mask=mask)[0][:, pad:]
    assert_close(left_padded, plain.numpy(), 1e-5)


def test_kv_cache_steps_give_the_logits_of_a_full_recomputation(model: Kronos, ref: dict[str, np.ndarray]) -> None:
    # 3 series share a 25-token history; each has 2 continuations ("samples") fed one token at a time
    history, length, samples = 25, 40, 2
    s1, s2, stamp = (torch.from_numpy(ref[k]) for k in ("s1", "s2", "stamp"))
    rows = [s1.repeat_interleave(samples, 0), s2.repeat_interleave(samples, 0), stamp.repeat_interleave(samples, 0)]
    rows[0][1::samples, history:] = torch.flip(rows[0][1::samples, history:], dims=[1])  # the second sample differs
    rows[1][1::samples, history:] = (rows[1][1::samples, history:] * 7) % 1024
    with torch.no_grad():
        full_s1_logits, full_context = model.decode_s1(*rows)
        caches = [LayerCache(None, length) for _ in range(model.n_layers)]
        memory = LayerCache(None, length)
        context = model.run_transformer(
            model.embed(s1[:, :history], s2[:, :history], stamp[:, :history]),
            torch.arange(history)[None], None, True, caches,
        )  # fmt: skip
        memory.store_history(*model.dep_layer.memory(context))
        hidden = context[:, -1:].repeat_interleave(samples, 0)
        for t in range(history, length + 1):
            np.testing.assert_allclose(model.head(hidden[:, 0]), full_s1_logits[:, t - 1], rtol=1e-5, atol=1e-5)
            s2_logits = model.head.cond_forward(
                model.dep_layer.step(hidden, model.embedding.emb_s1(rows[0][:, t - 1 : t]), memory)
            )
            full_s2 = model.decode_s2(full_context[:, :t], rows[0][:, t - 1 : t])[:, -1]
            np.testing.assert_allclose(s2_logits[:, 0], full_s2, rtol=1e-5, atol=1e-5)
            if t == length:
                break
            step = [r[:, t : t + 1] for r in rows]
            hidden = model.run_transformer(model.embed(*step), torch.full((6, 1), t), None, False, caches)
            memory.append(*model.dep_layer.memory(hidden))


# --- sampling -----------------------------------------------------------------------------------------------


def test_sample_with_a_fixed_seed_is_reproducible_and_paths_differ(
    predictor: KronosPredictor, candles: pd.DataFrame
) -> None:
    dfs, xs, ys = series_set(candles, [40, 25], pred_len=8)
    first = predictor.sample(dfs, xs, ys, 8, sample_count=6, T=1.0, seed=3)
    second = predictor.sample(dfs, xs, ys, 8, sample_count=6, T=1.0, seed=3)
    other = predictor.sample(dfs, xs, ys, 8, sample_count=6, T=1.0, seed=4)
    np.testing.assert_array_equal(first.paths, second.paths)
    assert first.seeds == (3, 4)
    assert not np.array_equal(first.paths, other.paths)
    assert first.paths.shape == (2, 6, 8, 6) and first.paths.dtype == np.float32
    for paths in first.paths:  # at temperature 1 the sampled paths of a series are not all the same
        assert len({p.tobytes() for p in paths}) == 6


def test_quantiles_are_monotone_and_computed_from_the_paths(predictor: KronosPredictor, candles: pd.DataFrame) -> None:
    dfs, xs, ys = series_set(candles, [45, 30], pred_len=7)
    out = predictor.sample(dfs, xs, ys, 7, sample_count=16, quantile_levels=(0.05, 0.5, 0.95), seed=0)
    assert out.levels == (0.05, 0.5, 0.95)
    assert out.quantiles.shape == (2, 3, 7, 6) and out.quantiles.dtype == np.float32
    assert (np.diff(out.quantiles, axis=1) >= 0).all()
    assert (out.quantiles[:, 0] < out.quantiles[:, 2]).any()
    np.testing.assert_allclose(out.quantiles[:, 1], np.median(out.paths, axis=1), rtol=1e-6)
    assert [len(t) for t in out.timestamps] == [7, 7]


def test_series_of_different_lengths_batched_equal_one_at_a_time(
    predictor: KronosPredictor, candles: pd.DataFrame
) -> None:
    dfs, xs, ys = series_set(candles, [50, 12, 33, 1], pred_len=9)
    seeds = [101, 7, 8, 55]
    batched = predictor.sample(dfs, xs, ys, 9, sample_count=5, seed=seeds)
    for i, seed in enumerate(seeds):
        alone = predictor.sample([dfs[i]], [xs[i]], [ys[i]], 9, sample_count=5, seed=[seed])
        np.testing.assert_allclose(batched.paths[i], alone.paths[0], rtol=1e-5)
    # an int seed gives series i the seed seed + i
    shifted = predictor.sample(dfs[1:3], xs[1:3], ys[1:3], 9, sample_count=5, seed=7)
    np.testing.assert_allclose(shifted.paths, batched.paths[1:3], rtol=1e-5)


@pytest.mark.parametrize(
    ("top_k", "top_p", "kept"),
    [
        (0, 0.7, [0, 1]),  # the token that crosses top_p is kept, those after it are dropped
        (0, 0.4, [0]),  # the best token always stays
        (0, 1.0, [0, 1, 2, 3]),
        (3, 0.1, [0, 1, 2]),  # top_k > 0 disables top_p, as in the reference
        (1, 1.0, [0]),  # greedy
    ],
)
def test_filtering_keeps_the_reference_tokens(top_k: int, top_p: float, kept: list[int]) -> None:
    logits = torch.log(torch.tensor([[0.15, 0.5, 0.05, 0.3]]))[:, [1, 3, 0, 2]]  # best first: 0.5 0.3 0.15 0.05
    filtered = filter_logits(logits, top_k, top_p)
    assert torch.isfinite(filtered[0]).nonzero().flatten().tolist() == kept


def test_cached_sampling_equals_full_recomputation(predictor: KronosPredictor, candles: pd.DataFrame) -> None:
    dfs, xs, ys = series_set(candles, [40, 22], pred_len=10)
    cached = predictor.sample(dfs, xs, ys, 10, sample_count=4, seed=1)
    recomputed = predictor.sample(dfs, xs, ys, 10, sample_count=4, seed=1, use_kv_cache=False)
    np.testing.assert_allclose(cached.paths, recomputed.paths, rtol=1e-5)


def test_sample_keeps_only_the_history_that_fits_with_the_horizon(
    predictor: KronosPredictor, candles: pd.DataFrame
) -> None:
    df, x_ts, y_ts = window(candles, 0, 100, 10)
    keep = MAX_CONTEXT - 10
    full = predictor.sample([df], [x_ts], [y_ts], 10, sample_count=3, seed=[5])
    tail = predictor.sample([df.iloc[-keep:]], [x_ts.iloc[-keep:]], [y_ts], 10, sample_count=3, seed=[5])
    np.testing.assert_array_equal(full.paths, tail.paths)


def test_sliding_window_sampling_follows_the_reference_predictor(
    predictor: KronosPredictor, candles: pd.DataFrame
) -> None:
    df, x_ts, y_ts = window(candles, 0, 100, 10)  # 100 + 10 candles > max_context 64: the window slides
    greedy = predictor.sample([df], [x_ts], [y_ts], 10, sample_count=2, top_k=1, sliding_window=True, seed=0)
    expected = predictor.predict(df, x_ts, y_ts, 10, top_k=1).to_numpy()
    for path in greedy.paths[0]:
        np.testing.assert_allclose(path, expected, rtol=1e-5)


def test_eight_threads_give_bit_identical_results_to_sequential_calls(
    predictor: KronosPredictor, candles: pd.DataFrame
) -> None:
    lengths = [[50, 17], [33], [8, 41, 26], [60, 5]]
    jobs = [(series_set(candles, lengths[k % 4], pred_len=6), k) for k in range(16)]

    def run(job: tuple[tuple[list[Any], list[Any], list[Any]], int]) -> np.ndarray:
        (dfs, xs, ys), seed = job
        return predictor.sample(dfs, xs, ys, 6, sample_count=4, seed=seed).paths

    sequential = [run(job) for job in jobs]
    results: list[np.ndarray | None] = [None] * len(jobs)
    barrier = threading.Barrier(8)

    def worker(w: int) -> None:
        barrier.wait()
        for i in range(w, len(jobs), 8):
            results[i] = run(jobs[i])

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for got, want in zip(results, sequential, strict=True):
        assert got is not None and np.array_equal(got, want)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"pred_len": 64}, "must be smaller than max_context"),
        ({"pred_len": 0}, "pred_len must be a positive integer"),
        ({"quantile_levels": (0.9, 0.1)}, "quantile_levels"),
        ({"quantile_levels": (0.0, 0.5)}, "quantile_levels"),
        ({"seed": [1, 2]}, "one int per series"),
        ({"T": 0.0}, "temperature"),
        ({"top_p": 0.0}, "top_p"),
        ({"sample_count": 0}, "sample_count"),
        ({"events": [np.zeros((3, 20))]}, r"events\[0\] must have shape \(45, 20\)"),
    ],
)
def test_sample_rejects_bad_arguments_with_the_field_named(
    predictor: KronosPredictor, candles: pd.DataFrame, kwargs: dict[str, Any], message: str
) -> None:
    df, x_ts, y_ts = window(candles, 0, 40, 5)
    pred_len = kwargs.pop("pred_len", 5)
    with pytest.raises(ValueError, match=message):
        predictor.sample([df], [x_ts], [y_ts.iloc[:pred_len]] if pred_len else [y_ts[:0]], pred_len, **kwargs)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda df, x, y: (df.drop(columns="high"), x, y), r"df\[0\] lacks price columns \['high'\]"),
        (lambda df, x, y: (df.assign(close=np.nan), x, y), r"df\[0\] contains NaN"),
        (lambda df, x, y: (df, x.iloc[1:], y), r"x_timestamp\[0\] has 39 entries for 40 rows"),
        (lambda df, x, y: (df, x, y.iloc[1:]), r"y_timestamp\[0\] has 4 entries, pred_len is 5"),
        (lambda df, x, y: (df, ["not a time"] * 40, y), r"x_timestamp\[0\] must be timestamps"),
        (lambda df, x, y: (df.to_numpy(), x, y), r"df\[0\] must be a pandas DataFrame"),
    ],
)
def test_bad_series_are_rejected_with_the_series_named(
    predictor: KronosPredictor, candles: pd.DataFrame, edit: Any, message: str
) -> None:
    df, x_ts, y_ts = edit(*window(candles, 0, 40, 5))
    with pytest.raises(ValueError, match=message):
        predictor.sample([df], [x_ts], [y_ts], 5)


def test_bf16_autocast_is_refused_on_cpu(model: Kronos, tokenizer: KronosTokenizer) -> None:
    with pytest.raises(ValueError, match="bf16_autocast needs a CUDA device"):
        KronosPredictor(model, tokenizer, device="cpu", bf16_autocast=True)


# --- events hook (issue 7) and training -------------------------------------------------------------------


def test_event_projection_is_zero_initialised_and_kept_out_of_the_checkpoint(
    tmp_path: Path, candles: pd.DataFrame
) -> None:
    model_dir, tok_dir = save_random_checkpoints(tmp_path, seed=1)
    model = Kronos.from_pretrained(model_dir)
    predictor = KronosPredictor(model, KronosTokenizer.from_pretrained(tok_dir), device="cpu", max_context=MAX_CONTEXT)
    df, x_ts, y_ts = window(candles, 0, 40, 5)
    events = [np.random.default_rng(0).normal(size=(45, 20)).astype(np.float32)]
    base = predictor.sample([df], [x_ts], [y_ts], 5, sample_count=3, seed=0)
    assert np.array_equal(
        base.paths, predictor.sample([df], [x_ts], [y_ts], 5, sample_count=3, seed=0, events=events).paths
    )
    proj = model.attach_event_projection()
    zero_init = predictor.sample([df], [x_ts], [y_ts], 5, sample_count=3, seed=0, events=events)
    np.testing.assert_allclose(zero_init.paths, base.paths, rtol=1e-6)
    with torch.no_grad():
        proj.weight.normal_(0, 1.0)
    moved = predictor.sample([df], [x_ts], [y_ts], 5, sample_count=3, seed=0, events=events)
    assert not np.allclose(moved.paths, base.paths)
    model.save_pretrained(tmp_path / "saved")
    assert set(load_file(tmp_path / "saved" / "model.safetensors")) == set(load_file(model_dir / "model.safetensors"))


def test_training_passes_give_gradients_through_the_quantiser_and_both_heads(ref: dict[str, np.ndarray]) -> None:
    torch.manual_seed(0)
    tokenizer = KronosTokenizer(**CASES["tokenizer_config"])
    (z_pre, z), bsq_loss, _, _ = tokenizer(torch.from_numpy(ref["x"]))
    (((z - torch.from_numpy(ref["x"])) ** 2).mean() + bsq_loss).backward()
    assert tokenizer.embed.weight.grad is not None and tokenizer.embed.weight.grad.abs().sum() > 0

    model = Kronos(**TINY_MODEL_CONFIG)
    s1, s2, stamp = (torch.from_numpy(ref[k]) for k in ("s1", "s2", "stamp"))
    s1_logits, s2_logits = model(s1[:, :-1], s2[:, :-1], stamp[:, :-1])  # s2 conditioned on sampled s1
    assert s1_logits.shape == s2_logits.shape == (3, 39, 1024)
    loss, ce_s1, ce_s2 = model.head.compute_loss(s1_logits, s2_logits, s1[:, 1:], s2[:, 1:])
    loss.backward()
    assert torch.isclose(loss, (ce_s1 + ce_s2) / 2)
    assert model.embedding.emb_s1.weight.grad is not None and model.dep_layer.cross_attn.q_proj.weight.grad is not None
