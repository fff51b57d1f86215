"""A GRU written out gate by gate, equal to ``torch.nn.GRU`` and showing its gates.

``nn.GRU`` runs in one fused kernel and returns only the hidden states. ``ExplicitGRU``
computes the same numbers one frame at a time with the equations in plain sight, and also
returns every gate activation, so ``speech-gru explain`` can show what the encoder of a
trained model does. It holds the same parameters under the same names as ``nn.GRU``
(``weight_ih_l{k}[_reverse]``, ...), so a trained GRU's ``state_dict`` loads into it
unchanged; ``ExplicitGRU.from_gru(gru)`` does that.

For every frame ``t``, with input ``x = x_t`` and the previous hidden state ``h = h_{t-1}``
(zeros before the first frame), PyTorch computes, in this order::

    r  = σ(W_ir x + b_ir + W_hr h + b_hr)          reset gate
    z  = σ(W_iz x + b_iz + W_hz h + b_hz)          update gate
    n  = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))  candidate memory
    h' = (1 − z) ⊙ n + z ⊙ h                       final memory (the output h_t)

where σ is the logistic sigmoid and ⊙ the element-wise product. In words, unit by unit:

* The **update gate** ``z`` decides how much of the past to carry forward: ``z ≈ 1``
  keeps the old memory ``h`` unchanged (the frame is skipped), ``z ≈ 0`` replaces it with
  the candidate ``n``. It is what lets a GRU hold on to a word's start until its end.
* The **reset gate** ``r`` decides how much of the past goes into the candidate:
  ``r ≈ 0`` makes ``n`` depend on the current frame alone (forget, start afresh),
  ``r ≈ 1`` mixes in the old memory fully.
* The **candidate memory** ``n`` (in ``[-1, 1]``) is what the unit would store if it took
  this frame in completely.
* The **final memory** ``h'`` interpolates between the old memory and the candidate,
  with ``z`` as the weight.

PyTorch packs the three gates' weights in one matrix each, in the order r, z, n:
``weight_ih_l{k}`` is ``[W_ir; W_iz; W_in]`` (3H, I), ``weight_hh_l{k}`` is
``[W_hr; W_hz; W_hn]`` (3H, H), and the biases likewise (3H,). Note that ``b_hn`` sits
inside the reset gate's product and ``b_in`` outside it, so the two biases of ``n`` are
not interchangeable (they are for ``r`` and ``z``).

A bidirectional layer runs a second, independent set of weights (suffix ``_reverse``)
from the last frame to the first and concatenates both outputs per frame, forward first;
layer ``k + 1`` reads layer ``k``'s concatenated output. In a padded batch the reverse
direction starts at each sequence's own last valid frame, as ``nn.GRU`` does with a
``PackedSequence``; outputs and gates at padded frames are zero.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

DIRECTIONS = ("forward", "backward")


@dataclass
class GateActivations:
    """Per-frame activations of one direction of one layer; each tensor is (B, T, H).

    Frames follow the input's time order for both directions (the backward direction's
    frame ``t`` is the step that read input frame ``t``). Padded frames hold zeros.

    Attributes:
        z: update gate, in (0, 1): how much of the previous memory is kept.
        r: reset gate, in (0, 1): how much of the previous memory enters the candidate.
        n: candidate memory, in (-1, 1).
        h: final memory, the layer's output for this direction.
    """

    z: Tensor
    r: Tensor
    n: Tensor
    h: Tensor


@dataclass
class GRUTrace:
    """Gate activations of every layer and direction of an ``ExplicitGRU`` run.

    Attributes:
        layers: ``layers[k][d]`` for layer ``k`` (0 = nearest the input) and direction
            ``d`` (0 = forward, 1 = backward when bidirectional).
    """

    layers: list[list[GateActivations]]

    def get(self, layer: int = -1, direction: str | int = "forward") -> GateActivations:
        """The activations of one layer (default: the last) and direction (name or index)."""
        index = DIRECTIONS.index(direction) if isinstance(direction, str) else direction
        return self.layers[layer][index]


def gru_step(
    x_proj: Tensor, h: Tensor, weight_hh: Tensor, bias_hh: Tensor | None
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """One GRU time step for a batch, with the input side already projected.

    Args:
        x_proj: (B, 3H) ``W_ih x + b_ih``, gate order r, z, n.
        h: (B, H) previous hidden state.
        weight_hh: (3H, H) ``[W_hr; W_hz; W_hn]``.
        bias_hh: (3H,) ``[b_hr; b_hz; b_hn]`` or None.

    Returns:
        ``(z, r, n, h_new)``, each (B, H).
    """
    h_proj = nn.functional.linear(h, weight_hh, bias_hh)  # (B, 3H): W_h* h + b_h*
    return gru_gates(x_proj, h_proj, h)


def gru_gates(
    x_proj: Tensor, h_proj: Tensor, h: Tensor, hidden_size: int | None = None
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The gates of one GRU step from both projections.

    Args:
        x_proj: (B, 3H) ``W_ih x + b_ih``, gate order r, z, n.
        h_proj: (B, 3H) ``W_hh h + b_hh``.
        h: (B, H) previous hidden state.
        hidden_size: H, when known (an export then splits at fixed sizes instead of
            computing them from the shapes).

    Returns:
        ``(z, r, n, h_new)``, each (B, H).
    """
    size = hidden_size or h.shape[-1]
    x_r, x_z, x_n = x_proj.split(size, dim=-1)
    h_r, h_z, h_n = h_proj.split(size, dim=-1)
    r = torch.sigmoid(x_r + h_r)  # reset gate
    z = torch.sigmoid(x_z + h_z)  # update gate
    n = torch.tanh(x_n + r * h_n)  # candidate memory
    h_new = (1 - z) * n + z * h  # final memory
    return z, r, n, h_new


def run_direction(
    x: Tensor,
    valid: Tensor,
    h0: Tensor,
    weight_ih: Tensor,
    weight_hh: Tensor,
    bias_ih: Tensor | None,
    bias_hh: Tensor | None,
    reverse: bool,
) -> tuple[Tensor, GateActivations]:
    """One direction of one layer over a padded batch.

    Args:
        x: (B, T, I) inputs.
        valid: (B, T) True on valid frames (a prefix of each row).
        h0: (B, H) initial hidden state.
        weight_ih: (3H, I); weight_hh: (3H, H); bias_ih, bias_hh: (3H,) or None.
        reverse: run from the last frame to the first.

    Returns:
        The (B, H) final hidden state (after each row's last valid step) and the gates.
    """
    B, T, _ = x.shape
    H = weight_hh.shape[1]
    x_proj = nn.functional.linear(x, weight_ih, bias_ih)  # (B, T, 3H), all frames at once
    z_all, r_all, n_all, h_all = (x.new_zeros(B, T, H) for _ in range(4))
    h = h0
    for t in reversed(range(T)) if reverse else range(T):
        z, r, n, h_new = gru_step(x_proj[:, t], h, weight_hh, bias_hh)
        keep = valid[:, t, None]  # (B, 1); padded frames leave h untouched
        h = torch.where(keep, h_new, h)
        z_all[:, t], r_all[:, t] = z * keep, r * keep
        n_all[:, t], h_all[:, t] = n * keep, h_new * keep
    return h, GateActivations(z=z_all, r=r_all, n=n_all, h=h_all)


class ExplicitGRU(nn.Module):
    """A multi-layer, optionally bidirectional GRU computed gate by gate.

    Same constructor arguments, parameter names and results as ``nn.GRU`` (see the module
    docstring for the equations); ``forward`` also returns the gate activations.

    Args:
        input_size: features per input frame.
        hidden_size: units per direction.
        num_layers: stacked layers.
        bias: use the ``b_i*`` and ``b_h*`` biases.
        batch_first: inputs and outputs are (B, T, ·) rather than (T, B, ·).
        dropout: dropout on each layer's output except the last, in training mode.
        bidirectional: add a backward direction to every layer.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = True,
        dropout: float = 0.0,
        bidirectional: bool = False,
    ) -> None:
        super().__init__()
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bias, self.batch_first = bias, batch_first
        self.dropout, self.bidirectional = dropout, bidirectional
        self.num_directions = 2 if bidirectional else 1
        # Borrow nn.GRU's parameter names, shapes and initialisation.
        reference = nn.GRU(
            input_size, hidden_size, num_layers, bias=bias, batch_first=batch_first,
            dropout=dropout, bidirectional=bidirectional,
        )  # fmt: skip
        for name, param in reference.named_parameters():
            self.register_parameter(name, nn.Parameter(param.detach().clone()))

    @classmethod
    def from_gru(cls, gru: nn.GRU) -> ExplicitGRU:
        """An ExplicitGRU with the configuration and (copied) weights of ``gru``."""
        if not isinstance(gru, nn.GRU):
            raise TypeError(f"expected an nn.GRU, got {type(gru).__name__}")
        explicit = cls(
            gru.input_size, gru.hidden_size, gru.num_layers, gru.bias, gru.batch_first,
            gru.dropout, gru.bidirectional,
        )  # fmt: skip
        explicit.load_state_dict(gru.state_dict())
        first = next(gru.parameters())
        return explicit.to(device=first.device, dtype=first.dtype).train(gru.training)

    def weights(self, layer: int, direction: int) -> tuple[Tensor, ...]:
        """``(weight_ih, weight_hh, bias_ih, bias_hh)`` of a layer and direction index."""
        suffix = f"_l{layer}" + ("_reverse" if direction == 1 else "")
        names = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
        return tuple(getattr(self, name + suffix, None) for name in names)

    def forward(
        self, x: Tensor, lengths: Tensor | None = None, hx: Tensor | None = None
    ) -> tuple[Tensor, Tensor, GRUTrace]:
        """Run the GRU over a (padded) batch.

        Args:
            x: (B, T, I) inputs ((T, B, I) when ``batch_first`` is False).
            lengths: (B,) valid frames per sequence, each in [1, T]; None means all T.
            hx: (num_layers * D, B, H) initial hidden states (zeros if None), D = 2 when
                bidirectional else 1, ordered as in ``nn.GRU``.

        Returns:
            ``output`` (B, T, D * H) (or (T, B, D * H)), the last layer's states with the
            directions concatenated and zeros on padded frames; ``h_n``
            (num_layers * D, B, H), each direction's state after its last valid step; and
            the ``GRUTrace`` of gate activations, (B, T, H) per layer and direction.
        """
        if not self.batch_first:
            x = x.transpose(0, 1)
        B, T, _ = x.shape
        if lengths is None:
            valid = torch.ones(B, T, dtype=torch.bool, device=x.device)
        else:
            valid = torch.arange(T, device=x.device) < lengths.to(x.device)[:, None]  # (B, T)
        if hx is None:
            hx = x.new_zeros(self.num_layers * self.num_directions, B, self.hidden_size)
        finals, trace = [], []
        layer_input = x
        for layer in range(self.num_layers):
            outputs, gates = [], []
            for direction in range(self.num_directions):
                h0 = hx[layer * self.num_directions + direction]
                h_last, acts = run_direction(
                    layer_input, valid, h0, *self.weights(layer, direction), reverse=direction == 1
                )
                finals.append(h_last)
                outputs.append(acts.h)
                gates.append(acts)
            trace.append(gates)
            layer_input = torch.cat(outputs, dim=-1)  # (B, T, D * H)
            if layer < self.num_layers - 1 and self.dropout > 0:
                layer_input = nn.functional.dropout(layer_input, self.dropout, self.training)
        output = layer_input if self.batch_first else layer_input.transpose(0, 1)
        return output, torch.stack(finals), GRUTrace(trace)
