"""ExplicitGRU: equal to nn.GRU, and its gates mean what the module docstring says."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from speech_gru.core.explicit_gru import ExplicitGRU, GRUTrace
from speech_gru.core.model import KeywordModel, ModelConfig

ATOL = 1e-5


pytestmark = pytest.mark.usefixtures("one_thread")


def make_gru(
    layers: int, bidirectional: bool, scale: float = 1.0, seed: int = 0, size: tuple = (12, 8)
) -> nn.GRU:
    """An nn.GRU with random weights; ``scale > 1`` saturates gates as trained weights do."""
    torch.manual_seed(seed)
    gru = nn.GRU(*size, num_layers=layers, batch_first=True, bidirectional=bidirectional)
    with torch.no_grad():
        for p in gru.parameters():
            p.mul_(scale)
    return gru.eval()


def reference(gru: nn.GRU, x: Tensor, lengths: Tensor | None) -> tuple[Tensor, Tensor]:
    """nn.GRU's output and h_n, through a PackedSequence when ``lengths`` is given."""
    if lengths is None:
        return gru(x)
    packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    out, h_n = gru(packed)
    return pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])[0], h_n


@pytest.mark.parametrize("layers", [1, 3])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("scale", [1.0, 4.0])
@pytest.mark.parametrize("padded", [False, True])
def test_equals_nn_gru(layers: int, bidirectional: bool, scale: float, padded: bool) -> None:
    gru = make_gru(layers, bidirectional, scale)
    explicit = ExplicitGRU.from_gru(gru)
    torch.manual_seed(1)
    x = torch.randn(5, 30, 12)
    lengths = torch.tensor([30, 17, 1, 29, 8]) if padded else None
    with torch.no_grad():
        want, want_h = reference(gru, x, lengths)
        out, h_n, trace = explicit(x, lengths)
    assert out.shape == want.shape == (5, 30, (2 if bidirectional else 1) * 8)
    torch.testing.assert_close(out, want, atol=ATOL, rtol=0)
    torch.testing.assert_close(h_n, want_h, atol=ATOL, rtol=0)
    assert len(trace.layers) == layers
    assert all(len(dirs) == (2 if bidirectional else 1) for dirs in trace.layers)
    # The last layer's per-direction states are the output's halves.
    last = trace.layers[-1]
    torch.testing.assert_close(torch.cat([g.h for g in last], -1), out, atol=0, rtol=0)


def test_padded_frames_are_zero_and_reverse_starts_at_the_last_valid_frame() -> None:
    gru = make_gru(2, True, scale=2.0)
    explicit = ExplicitGRU.from_gru(gru)
    torch.manual_seed(2)
    x = torch.randn(3, 20, 12)
    lengths = torch.tensor([20, 9, 4])
    with torch.no_grad():
        out, h_n, trace = explicit(x, lengths)
        for i, n in enumerate(lengths.tolist()):
            alone, alone_h, _ = explicit(x[i : i + 1, :n])  # the clip without padding
            torch.testing.assert_close(out[i, :n], alone[0], atol=ATOL, rtol=0)
            torch.testing.assert_close(h_n[:, i], alone_h[:, 0], atol=ATOL, rtol=0)
            assert not out[i, n:].any()
            for dirs in trace.layers:
                for g in dirs:
                    for t in (g.z, g.r, g.n, g.h):
                        assert t.shape == (3, 20, 8) and not t[i, n:].any()
            # What follows the padding must not leak into the backward direction.
            garbage = x.clone()
            garbage[i, n:] = 100.0
            changed, _, _ = explicit(garbage, lengths)
            torch.testing.assert_close(changed[i], out[i], atol=0, rtol=0)


def test_double_precision_is_exact_and_time_major_works() -> None:
    gru = make_gru(2, True, scale=3.0).double()
    gru_tm = nn.GRU(12, 8, num_layers=2, bidirectional=True).double().eval()
    gru_tm.load_state_dict(gru.state_dict())
    x = torch.randn(4, 25, 12, dtype=torch.double)
    hx = torch.randn(4, 4, 8, dtype=torch.double)
    with torch.no_grad():
        want, want_h = gru_tm(x.transpose(0, 1), hx)
        out, h_n, _ = ExplicitGRU.from_gru(gru_tm)(x.transpose(0, 1), hx=hx)
    torch.testing.assert_close(out, want, atol=1e-12, rtol=0)
    torch.testing.assert_close(h_n, want_h, atol=1e-12, rtol=0)


def test_gradients_match() -> None:
    gru = make_gru(2, True, scale=2.0)
    explicit = ExplicitGRU.from_gru(gru)
    x = torch.randn(3, 15, 12)
    lengths = torch.tensor([15, 7, 3])
    reference(gru, x, lengths)[0].square().sum().backward()
    explicit(x, lengths)[0].square().sum().backward()
    grads = dict(gru.named_parameters())
    for name, p in explicit.named_parameters():
        torch.testing.assert_close(p.grad, grads[name].grad, atol=1e-4, rtol=1e-4)


def test_state_dict_is_interchangeable_with_nn_gru() -> None:
    explicit = ExplicitGRU(12, 8, num_layers=2, bidirectional=True)
    gru = nn.GRU(12, 8, num_layers=2, batch_first=True, bidirectional=True)
    assert explicit.state_dict().keys() == gru.state_dict().keys()
    gru.load_state_dict(explicit.state_dict())
    x = torch.randn(2, 10, 12)
    with torch.no_grad():
        torch.testing.assert_close(explicit(x)[0], gru(x)[0], atol=ATOL, rtol=0)
    with pytest.raises(TypeError, match="nn.GRU"):
        ExplicitGRU.from_gru(nn.LSTM(12, 8))  # type: ignore[arg-type]


@pytest.mark.parametrize("scale", [1.0, 4.0])
def test_gate_ranges(scale: float) -> None:
    """Gates are sigmoids, in (0, 1); float32 rounds a saturated one to exactly 0 or 1."""
    explicit = ExplicitGRU.from_gru(make_gru(2, True, scale=scale))
    with torch.no_grad():
        _, _, trace = explicit(scale * torch.randn(4, 40, 12))
    for dirs in trace.layers:
        for g in dirs:
            for gate in (g.z, g.r):
                if scale == 1.0:
                    assert ((gate > 0) & (gate < 1)).all()
                else:
                    assert ((gate >= 0) & (gate <= 1)).all()
                    assert ((gate > 0.01) & (gate < 0.99)).any()
            assert (g.n.abs() <= 1).all() and (g.h.abs() <= 1).all()
    assert trace.get(-1, "backward") is trace.layers[1][1]
    assert trace.get(0, 0) is trace.layers[0][0]


def force_gate(gru: ExplicitGRU, gate: str, value: float) -> None:
    """Set the hidden-side bias of gate ``r``, ``z`` or ``n`` (packed order r, z, n)."""
    index = "rzn".index(gate)
    H = gru.hidden_size
    with torch.no_grad():
        for name, p in gru.named_parameters():
            if name.startswith("bias_hh"):
                p[index * H : (index + 1) * H] = value


def one_layer(seed: int = 3) -> tuple[ExplicitGRU, Tensor, Tensor]:
    gru = ExplicitGRU.from_gru(make_gru(1, True, scale=1.0, seed=seed))
    torch.manual_seed(seed)
    return gru, torch.randn(2, 12, 12), 0.8 * torch.rand(2, 2, 8) - 0.4


def test_update_gate_near_one_carries_the_past_forward_unchanged() -> None:
    gru, x, hx = one_layer()
    force_gate(gru, "z", 40.0)
    with torch.no_grad():
        out, h_n, trace = gru(x, hx=hx)
    assert (trace.get(0, "forward").z > 1 - 1e-6).all()
    forward, backward = out[..., :8], out[..., 8:]
    torch.testing.assert_close(forward, hx[0, :, None].expand_as(forward), atol=1e-6, rtol=0)
    torch.testing.assert_close(backward, hx[1, :, None].expand_as(backward), atol=1e-6, rtol=0)
    torch.testing.assert_close(h_n, hx, atol=1e-6, rtol=0)


def test_update_gate_near_zero_replaces_the_memory_with_the_candidate() -> None:
    gru, x, hx = one_layer()
    force_gate(gru, "z", -40.0)
    with torch.no_grad():
        _, _, trace = gru(x, hx=hx)
    for g in trace.layers[0]:
        assert (g.z < 1e-6).all()
        torch.testing.assert_close(g.h, g.n, atol=1e-6, rtol=0)


def test_reset_gate_near_zero_makes_the_candidate_ignore_the_past() -> None:
    """With r ≈ 0, n = tanh(W_in x + b_in): the same whatever the previous memory was."""
    gru, x, hx = one_layer()
    force_gate(gru, "r", -40.0)
    with torch.no_grad():
        _, _, trace = gru(x, hx=hx)
        _, _, other = gru(x, hx=-hx)
        W_in = gru.weight_ih_l0[16:]
        b_in = gru.bias_ih_l0[16:]
        alone = torch.tanh(x @ W_in.T + b_in)  # (B, T, H), no h at all
    g = trace.get(0, "forward")
    assert (g.r < 1e-6).all()
    torch.testing.assert_close(g.n, alone, atol=1e-6, rtol=0)
    torch.testing.assert_close(g.n, other.get(0, "forward").n, atol=1e-6, rtol=0)
    # With r ≈ 1 the past does enter the candidate.
    force_gate(gru, "r", 40.0)
    with torch.no_grad():
        a, b = gru(x, hx=hx)[2], gru(x, hx=-hx)[2]
    assert (a.get(0, 0).n[:, 0] - b.get(0, 0).n[:, 0]).abs().max() > 1e-2


def test_loads_a_keyword_model_encoder() -> None:
    torch.manual_seed(0)
    model = KeywordModel(ModelConfig(num_classes=4, hidden_size=16, num_layers=2)).eval()
    explicit = ExplicitGRU.from_gru(model.encoder)
    assert explicit.bidirectional and explicit.num_layers == 2 and not explicit.training
    wave = 0.1 * torch.randn(3, 16000)
    lengths = torch.tensor([16000, 9000, 4000])
    with torch.no_grad():
        feats, frame_lengths = model.features(wave, lengths)
        want = model.encode(feats, frame_lengths)
        out, _, trace = explicit(feats, frame_lengths)
    torch.testing.assert_close(out, want, atol=ATOL, rtol=0)
    assert isinstance(trace, GRUTrace)
    assert trace.get(-1, "backward").z.shape == (3, feats.shape[1], 16)
