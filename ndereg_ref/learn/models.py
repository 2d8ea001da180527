"""Neural vector fields with hand-written vector–Jacobian products.

The vector-field protocol
-------------------------
Every solver and adjoint of the package calls a vector field as ``fun(t, y, params)``:

* ``t`` a float (autograd may pass a scalar ArrayBox, e.g. TayNODE differentiates through t),
* ``y`` the state, of the shape of ``y0`` (here: ``(dim,)`` or ``(batch, dim)``),
* ``params`` an array or a list of arrays (here: ``[W1, b1, W2, b2, …]``);

it returns dy/dt with the shape of ``y``.  The forward pass is written with ``autograd.numpy`` so that
autograd can trace it (reverse *and* forward mode, also nested).  A field that also has a method

    ``fun.vjp(t, y, params, v) -> (y_bar, params_bar)``,   y_bar = vᵀ ∂f/∂y,  params_bar = vᵀ ∂f/∂θ

(``y_bar`` shaped like ``y``, ``params_bar`` a list shaped like ``params``) is used by the discrete adjoint
(:mod:`ndereg_ref.ode.adjoint`) instead of autograd: one call per RK stage of the reverse sweep.  Optional
extras used by teaching code and by regularizers: ``fun.jvp(t, y, params, u)`` = (∂f/∂y) u and
``fun.time_derivative(t, y, params)`` = ∂f/∂t (TayNODE's second derivative d²y/dt² = (∂f/∂y) f + ∂f/∂t).

The MLP
-------
With the *row-vector* convention (a batch of states is a matrix with one state per row, as in
``y @ W``), a network with layer sizes n_0 → n_1 → … → n_L computes

    x_0 = φ(t, y)                          input features: y, or y³ (``cubic_input``), with t appended as a
                                           last column (``time_input``)
    z_l = x_{l-1} W_l + b_l,               W_l: (n_{l-1}, n_l),  b_l: (n_l,)
    x_l = σ(z_l)          (l < L),         σ = tanh or softplus
    f   = σ_out(z_L)                       σ_out = identity unless ``final_activation`` is given

and its reverse pass (the chain rule read right to left; Goodfellow, Bengio & Courville, *Deep Learning*,
§6.5, Algorithm 6.4) with g_L = v ⊙ σ_out'(z_L):

    W̄_l = x_{l-1}ᵀ g_l,   b̄_l = Σ_batch g_l,   x̄_{l-1} = g_l W_lᵀ,   g_{l-1} = x̄_{l-1} ⊙ σ'(z_{l-1})
    ȳ = x̄_0[:, :dim]      (times 3 y² with ``cubic_input``; the t column's cotangent is dropped)

The spiral field of Pal et al. (2021, §5.1) and DiffEqFlux's neural-ODE tutorial is
``MLP(2, hidden=(50,), activation="tanh", cubic_input=True)``: du/dt = NN(u³).

Weights are initialised Glorot/Xavier-uniform, W ~ U(−a, a) with a = sqrt(6 / (fan_in + fan_out))
(Glorot & Bengio, AISTATS 2010, eq. (16)), biases zero — the default of Flux's ``Dense`` layer, used by the
papers' Julia code.

``LinearDiagonalDiffusion`` is the diagonal multiplicative noise g(t, y) = θ ⊙ y of the neural-SDE
experiments (DiffEqFlux's spiral SDE uses the true diffusion 0.2 ⊙ u).

Example
-------
>>> import numpy as np
>>> f = MLP(2, hidden=(16,), cubic_input=True)
>>> params = f.init_params(0)
>>> [p.shape for p in params]
[(2, 16), (16,), (16, 2), (2,)]
>>> y = np.array([2.0, 0.0]); v = np.array([1.0, -1.0])
>>> y_bar, params_bar = f.vjp(0.0, y, params, v)
>>> y_bar.shape, len(params_bar)
((2,), 4)
"""

from __future__ import annotations

from collections.abc import Sequence

import autograd.numpy as anp
import numpy as np
from autograd.builtins import SequenceBox
from autograd.tracer import Box

from ..rng import as_generator

__all__ = [
    "ACTIVATIONS",
    "MLP",
    "LinearDiagonalDiffusion",
    "n_params",
    "flatten_params",
    "unflatten_params",
]

ACTIVATIONS = ("tanh", "softplus")


#: what a parameter list may be: autograd traces a list argument as a SequenceBox (len and indexing work)
_PARAM_LISTS = (list, tuple, SequenceBox)


def _xp(*args):
    """autograd.numpy if any argument (or parameter array) is being traced, else plain numpy: the same
    code either way, but untraced calls skip autograd's per-operation dispatch (measured: forward 23 → 16
    µs, VJP 74 → 44 µs for the 2-50-2 spiral net)."""
    for a in args:
        if isinstance(a, Box) or (isinstance(a, (list, tuple)) and any(isinstance(p, Box) for p in a)):
            return anp
    return np


# --------------------------------------------------------------------------------------------------
# activations: σ(z) and σ'(z) side by side (σ' may reuse a = σ(z), as tanh' = 1 − a²)
# --------------------------------------------------------------------------------------------------
def _activation(xp, name: str | None, z):
    """σ(z) for σ ∈ {tanh, softplus, identity (None)}; ``xp`` is numpy or autograd.numpy."""
    if name is None:
        return z
    if name == "tanh":
        return xp.tanh(z)
    # softplus(z) = log(1 + e^z), written as logaddexp(0, z) so that large z does not overflow
    return xp.logaddexp(0.0, z)


def _activation_grad(xp, name: str | None, z, a):
    """σ'(z), given z and a = σ(z); ``None`` for the identity (callers skip the product)."""
    if name is None:
        return None
    if name == "tanh":
        return 1.0 - a * a
    # softplus' = logistic sigmoid; 0.5 (1 + tanh(z/2)) is the overflow-free form of 1 / (1 + e^{-z})
    return 0.5 * (1.0 + xp.tanh(0.5 * z))


def _shape_str(shape) -> str:
    return "(" + ", ".join(str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"


# --------------------------------------------------------------------------------------------------
# MLP
# --------------------------------------------------------------------------------------------------
class MLP:
    """Multilayer perceptron vector field f(t, y; θ) for neural ODEs (see the module docstring).

    Parameters
    ----------
    dim : state dimension d; the output has the shape of y, which is ``(d,)`` or ``(batch, d)``.
    hidden : widths of the hidden layers (an int means one hidden layer; ``()`` gives an affine field).
    activation : ``"tanh"`` or ``"softplus"`` for the hidden layers.
    time_input : append t as an extra input feature (then ∂f/∂t ≠ 0).
    time_every_layer : append t to the input of *every* layer, not only the first (implies ``time_input``):
        the MNIST field of Pal et al. (2021, §5.2; their code's ``Dense(784+1 → 100, tanh)``,
        ``Dense(100+1 → 784, tanh)``), f(x, t) = tanh(W2 [tanh(W1 [x; t] + b1); t] + b2).
    cubic_input : feed y³ (elementwise) instead of y — the spiral example's ``NN(u.^3)``.
    final_activation : ``None`` (linear output layer), ``"tanh"`` or ``"softplus"``.
    keep_activations : let the discrete adjoint keep each accepted stage's hidden activations from the
        forward solve (:meth:`forward_with_residuals`), so that its VJPs skip the forward pass: the
        gradient costs ~16 % less (tests: the same bits) and the "adjoint" recording level holds
        Σ hidden widths / dim more states per stage (docs/design.md §6, "Reusing the forward's activations").

    ``params`` is the list ``[W1, b1, …, W_L, b_L]`` with ``W_l`` of shape ``(n_{l-1}, n_l)`` and ``b_l`` of
    shape ``(n_l,)``, where ``layer_sizes = (n_0, …, n_L) = (d + time_input, *hidden, d)``.
    """

    def __init__(
        self,
        dim: int,
        hidden: Sequence[int] | int = (50,),
        activation: str = "tanh",
        time_input: bool = False,
        cubic_input: bool = False,
        final_activation: str | None = None,
        time_every_layer: bool = False,
        keep_activations: bool = False,
    ):
        if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim < 1:
            raise ValueError(f"dim must be a positive int, got {dim!r}")
        if isinstance(hidden, (int, np.integer)) and not isinstance(hidden, bool):
            hidden = (hidden,)
        hidden = tuple(hidden)
        for width in hidden:
            if isinstance(width, bool) or not isinstance(width, (int, np.integer)) or width < 1:
                raise ValueError(f"hidden widths must be positive ints, got hidden={hidden!r}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; expected one of {ACTIVATIONS}")
        if final_activation is not None and final_activation not in ACTIVATIONS:
            raise ValueError(
                f"unknown final_activation {final_activation!r}; expected None or one of {ACTIVATIONS}"
            )
        self.dim = int(dim)
        self.hidden = tuple(int(w) for w in hidden)
        self.activation = activation
        self.time_every_layer = bool(time_every_layer)
        self.keep_activations = bool(keep_activations)
        self.time_input = bool(time_input) or self.time_every_layer
        self.cubic_input = bool(cubic_input)
        self.final_activation = final_activation
        self.layer_sizes = (self.dim + int(self.time_input), *self.hidden, self.dim)
        # with time_every_layer, layers after the first see their input plus the t column
        self._fan_in = tuple(
            n + int(self.time_every_layer and l > 0) for l, n in enumerate(self.layer_sizes[:-1])
        )
        self._param_shapes = tuple(
            shape
            for n_in, n_out in zip(self._fan_in, self.layer_sizes[1:])
            for shape in ((n_in, n_out), (n_out,))
        )

    def __repr__(self) -> str:
        return (
            f"MLP(dim={self.dim}, hidden={self.hidden}, activation={self.activation!r}, "
            f"time_input={self.time_input}, cubic_input={self.cubic_input}, "
            f"final_activation={self.final_activation!r}"
            + (", time_every_layer=True" if self.time_every_layer else "")
            + (", keep_activations=True)" if self.keep_activations else ")")
        )

    @property
    def n_layers(self) -> int:
        """L, the number of affine layers."""
        return len(self.layer_sizes) - 1

    @property
    def param_shapes(self) -> list[tuple[int, ...]]:
        """Shapes of ``[W1, b1, …, W_L, b_L]``."""
        return list(self._param_shapes)

    @property
    def n_params(self) -> int:
        """Total number of scalar parameters Σ_l (n_{l-1} + 1) n_l."""
        return sum(int(np.prod(s)) for s in self.param_shapes)

    def init_params(self, rng: np.random.Generator | int) -> list[np.ndarray]:
        """Glorot/Xavier-uniform weights W_l ~ U(−a_l, a_l), a_l = sqrt(6/(n_{l-1} + n_l)), zero biases
        (Glorot & Bengio 2010, eq. (16); Flux's ``Dense`` default).

        ``rng`` is a ``numpy.random.Generator`` or an int seed; the weights are drawn in the order
        W1, W2, …, so the same seed gives the same parameters.
        """
        rng = as_generator(rng)
        params = []
        for n_in, n_out in zip(self._fan_in, self.layer_sizes[1:]):
            limit = np.sqrt(6.0 / (n_in + n_out))
            params += [rng.uniform(-limit, limit, size=(n_in, n_out)), np.zeros(n_out)]
        return params

    # ---------------------------------------------------------------------------------------- checks
    def _check_y(self, y, name: str = "y") -> tuple[int, ...]:
        shape = np.shape(y)  # works for ArrayBoxes too (they have .shape)
        if len(shape) not in (1, 2) or shape[-1] != self.dim:
            raise ValueError(
                f"{self!r}: {name} must have shape ({self.dim},) or (batch, {self.dim}), "
                f"got {_shape_str(shape)}"
            )
        return shape

    def _check_params(self, params) -> None:
        expected = self._param_shapes
        if not isinstance(params, _PARAM_LISTS):
            raise ValueError(
                f"{self!r}: params must be a list [W1, b1, …, W{self.n_layers}, "
                f"b{self.n_layers}], got {type(params).__name__}"
            )
        if len(params) != len(expected):
            raise ValueError(
                f"{self!r}: expected {len(expected)} parameter arrays [W1, b1, …] for layer "
                f"sizes {self.layer_sizes}, got {len(params)}"
            )
        for i, (p, shape) in enumerate(zip(params, expected)):
            if np.shape(p) != shape:
                name = ("W" if i % 2 == 0 else "b") + str(i // 2 + 1)
                raise ValueError(
                    f"{self!r}: {name} must have shape {_shape_str(shape)}, got {_shape_str(np.shape(p))}"
                )

    # --------------------------------------------------------------------------------- forward pass
    def _forward(self, xp, t, y, params):
        """Forward pass keeping what the reverse pass needs (``xp``: numpy or autograd.numpy).

        Returns ``(out, xs, zs)`` with ``xs = [x_0, …, x_L]`` (x_L = f) and ``zs = [z_1, …, z_L]``, all 2-D
        (batch, ·) — a single state is treated as a batch of one.
        """
        self._check_y(y)
        self._check_params(params)
        y2 = xp.reshape(y, (-1, self.dim))
        x = y2**3 if self.cubic_input else y2  # x_0 = φ(t, y)
        if self.time_input:
            x = xp.concatenate([x, t * xp.ones((y2.shape[0], 1))], axis=1)
        xs, zs = [x], []
        for l in range(self.n_layers):
            W, b = params[2 * l], params[2 * l + 1]
            inp = xs[-1]
            if self.time_every_layer and l > 0:
                inp = xp.concatenate([inp, t * xp.ones((y2.shape[0], 1))], axis=1)
            z = xp.dot(inp, W) + b  # z_l = x_{l-1} W_l + b_l  (x_{l-1} with a t column if time_every_layer)
            name = self.activation if l < self.n_layers - 1 else self.final_activation
            zs.append(z)
            xs.append(_activation(xp, name, z))  # x_l = σ(z_l)
        return xp.reshape(xs[-1], np.shape(y)), xs, zs

    def __call__(self, t, y, params):
        """f(t, y; θ) with the shape of y.  Traceable by autograd (y, params and t may be ArrayBoxes)."""
        return self._forward(_xp(t, y, params), t, y, params)[0]

    def forward_with_residuals(self, t, y, params):
        """``(f(t, y; θ), residuals)``: the forward pass and what :meth:`vjp` needs of it beyond (t, y, θ)
        — the hidden activations x_1 … x_{L−1}, the output x_L only under a final tanh, the z_l only for
        softplus layers (tanh' = 1 − x², softplus' needs z).  The solver keeps them for the stages of
        accepted steps when the discrete adjoint will differentiate them, so that the sweep's VJPs do
        not recompute the forward (docs/design.md §6, "Reusing the forward's activations")."""
        out, xs, zs = self._forward(np, t, y, params)
        L = self.n_layers
        keep_out = self.final_activation == "tanh"
        hidden_z = self.activation == "softplus"
        final_z = self.final_activation == "softplus"
        x_kept = xs[1:L] + ([xs[L]] if keep_out else [])
        z_kept = [zs[l] if (hidden_z if l < L - 1 else final_z) else None for l in range(L)]
        return out, (x_kept, z_kept)

    def _restore(self, xp, t, y, residuals):
        """xs, zs of :meth:`_forward` from :meth:`forward_with_residuals`' residuals (x_0 formed again from
        (t, y), the output only where it is needed)."""
        x_kept, zs = residuals
        y2 = xp.reshape(y, (-1, self.dim))
        x = y2**3 if self.cubic_input else y2
        if self.time_input:
            x = xp.concatenate([x, t * xp.ones((y2.shape[0], 1))], axis=1)
        L = self.n_layers
        xs = [x] + list(x_kept[: L - 1]) + [x_kept[L - 1] if len(x_kept) == L else None]
        return xs, zs

    # -------------------------------------------------------------------------------- reverse pass
    def vjp(self, t, y, params, v, residuals=None):
        """(vᵀ ∂f/∂y, vᵀ ∂f/∂θ) — the hand-written reverse pass of the module docstring.

        ``v`` has the shape of ``y``; returns ``y_bar`` (shape of y) and ``params_bar`` (a list shaped like
        ``params``).  For a batch, each state's output depends on its own row only, so ``y_bar`` is row-wise
        and the parameter cotangents are sums over the batch.  The x_l, z_l of the forward pass come from
        ``residuals`` (:meth:`forward_with_residuals` at the same (t, y, θ): the same values, so the same
        result bit for bit) or are recomputed.  Plain NumPy when nothing is traced; under autograd it is
        itself differentiable (e.g. Hessian–vector products).
        """
        if np.shape(v) != np.shape(y):
            raise ValueError(
                f"{self!r}: v must have the shape of y {_shape_str(np.shape(y))}, got "
                f"{_shape_str(np.shape(v))}"
            )
        xp = _xp(t, y, params, v)
        if residuals is not None and xp is np:
            self._check_params(params)
            xs, zs = self._restore(xp, t, y, residuals)
        else:
            _, xs, zs = self._forward(xp, t, y, params)
        L = self.n_layers
        g = xp.reshape(v, (-1, self.dim))  # ∂L/∂f, one row per state
        dsigma = _activation_grad(xp, self.final_activation, zs[-1], xs[-1])
        if dsigma is not None:
            g = g * dsigma  # g_L = v ⊙ σ_out'(z_L)
        params_bar = [None] * (2 * L)
        for l in range(L - 1, -1, -1):  # layer l+1 in the 1-based notation of the docstring
            W = params[2 * l]
            params_bar[2 * l + 1] = xp.sum(g, axis=0)  # b̄ = Σ_batch g
            inp = xs[l]
            if self.time_every_layer and l > 0:
                inp = xp.concatenate([inp, t * xp.ones((inp.shape[0], 1))], axis=1)
            params_bar[2 * l] = xp.dot(xp.transpose(inp), g)  # W̄ = x_{l-1}ᵀ g
            x_bar = xp.dot(g, xp.transpose(W))  # x̄_{l-1} = g Wᵀ
            if self.time_every_layer and l > 0:
                x_bar = x_bar[:, :-1]  # the t column's cotangent is dropped
            if l > 0:  # through the hidden activation: g_{l-1} = x̄_{l-1} ⊙ σ'(z_{l-1})
                g = x_bar * _activation_grad(xp, self.activation, zs[l - 1], xs[l])
        y_bar = x_bar[:, : self.dim] if self.time_input else x_bar  # drop the t column
        if self.cubic_input:  # d(y³)/dy = 3 y²
            y_bar = y_bar * (3.0 * xp.reshape(y, (-1, self.dim)) ** 2)
        return xp.reshape(y_bar, np.shape(y)), params_bar

    # -------------------------------------------------------------------------------- forward mode
    def _tangent(self, t, y, params, u, dt: float):
        """Directional derivative (∂f/∂y) u + (∂f/∂t) dt by pushing tangents through the layers:
        ẋ_0 = φ'(t, y)·(u, dt),  ż_l = ẋ_{l-1} W_l,  ẋ_l = σ'(z_l) ⊙ ż_l."""
        xp = _xp(t, y, params, u)
        _, xs, zs = self._forward(xp, t, y, params)
        u2 = xp.reshape(u, (-1, self.dim))
        dx = 3.0 * xp.reshape(y, (-1, self.dim)) ** 2 * u2 if self.cubic_input else u2
        if self.time_input:
            dx = xp.concatenate([dx, dt * xp.ones((u2.shape[0], 1))], axis=1)
        for l in range(self.n_layers):
            name = self.activation if l < self.n_layers - 1 else self.final_activation
            if self.time_every_layer and l > 0:
                dx = xp.concatenate([dx, dt * xp.ones((u2.shape[0], 1))], axis=1)
            dx = xp.dot(dx, params[2 * l])
            dsigma = _activation_grad(xp, name, zs[l], xs[l + 1])
            if dsigma is not None:
                dx = dsigma * dx
        return xp.reshape(dx, np.shape(y))

    def jvp(self, t, y, params, u):
        """(∂f/∂y)(t, y) u, row by row for a batch (u has the shape of y)."""
        if np.shape(u) != np.shape(y):
            raise ValueError(
                f"{self!r}: u must have the shape of y {_shape_str(np.shape(y))}, got "
                f"{_shape_str(np.shape(u))}"
            )
        return self._tangent(t, y, params, u, 0.0)

    def time_derivative(self, t, y, params):
        """∂f/∂t at (t, y); identically zero when ``time_input`` is False."""
        if not self.time_input:
            self._check_y(y)
            self._check_params(params)
            return np.zeros(np.shape(y))
        return self._tangent(t, y, params, np.zeros(np.shape(y)), 1.0)


# --------------------------------------------------------------------------------------------------
# diagonal diffusion for neural SDEs
# --------------------------------------------------------------------------------------------------
class LinearDiagonalDiffusion:
    """Diagonal multiplicative noise g(t, y; θ) = θ ⊙ y, params = [θ] with θ of shape (dim,).

    Used as the diffusion of an Itô SDE dX = f dt + g ⊙ dW (docs/design.md §7).  VJP: ȳ = θ ⊙ v,
    θ̄ = Σ_batch y ⊙ v.
    """

    def __init__(self, dim: int):
        if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim < 1:
            raise ValueError(f"dim must be a positive int, got {dim!r}")
        self.dim = int(dim)

    def __repr__(self) -> str:
        return f"LinearDiagonalDiffusion(dim={self.dim})"

    @property
    def param_shapes(self) -> list[tuple[int, ...]]:
        return [(self.dim,)]

    @property
    def n_params(self) -> int:
        return self.dim

    def init_params(
        self, rng: np.random.Generator | int | None = None, scale: float = 0.1
    ) -> list[np.ndarray]:
        """[θ] with θ = scale · 1 (deterministic; ``rng`` is accepted so that every field shares the
        ``init_params(rng)`` call, and is not used)."""
        if rng is not None:
            as_generator(rng)  # still reject nonsense
        return [np.full(self.dim, float(scale))]

    def _check(self, y, params):
        shape = np.shape(y)
        if len(shape) not in (1, 2) or shape[-1] != self.dim:
            raise ValueError(
                f"{self!r}: y must have shape ({self.dim},) or (batch, {self.dim}), got {_shape_str(shape)}"
            )
        if not isinstance(params, _PARAM_LISTS) or len(params) != 1 or np.shape(params[0]) != (self.dim,):
            raise ValueError(f"{self!r}: params must be [theta] with theta of shape ({self.dim},)")

    def __call__(self, t, y, params):
        """g(t, y; θ) = θ ⊙ y (broadcast over a batch)."""
        self._check(y, params)
        return params[0] * y

    def vjp(self, t, y, params, v):
        """(vᵀ ∂g/∂y, vᵀ ∂g/∂θ) = (θ ⊙ v, [Σ_batch y ⊙ v])."""
        self._check(y, params)
        if tuple(np.shape(v)) != tuple(np.shape(y)):
            raise ValueError(f"{self!r}: v must have the shape of y {_shape_str(np.shape(y))}")
        return params[0] * v, [anp.reshape(anp.sum(anp.reshape(y * v, (-1, self.dim)), axis=0), (self.dim,))]

    def jvp(self, t, y, params, u):
        """(∂g/∂y) u = θ ⊙ u."""
        self._check(y, params)
        return params[0] * u

    def time_derivative(self, t, y, params):
        """∂g/∂t = 0."""
        self._check(y, params)
        return anp.zeros(np.shape(y))


# --------------------------------------------------------------------------------------------------
# parameter lists <-> flat vectors
# --------------------------------------------------------------------------------------------------
def n_params(params) -> int:
    """Number of scalars in a list of arrays (or one array)."""
    if isinstance(params, _PARAM_LISTS):
        return sum(int(np.size(p)) for p in params)
    return int(np.size(params))


def flatten_params(params) -> np.ndarray:
    """Concatenate ``[p_1, p_2, …]`` into one 1-D vector θ (row-major, in list order); traceable.

    Unlike :func:`ndereg_ref.ode.params.flatten_params` (which also returns a structure spec), this returns
    the vector only; rebuild with :func:`unflatten_params`.
    """
    if not isinstance(params, _PARAM_LISTS):
        return anp.reshape(params, (-1,))
    if len(params) == 0:
        return np.zeros(0)
    return anp.concatenate([anp.reshape(p, (-1,)) for p in params])


def unflatten_params(theta, like) -> list:
    """Inverse of :func:`flatten_params`: split θ into arrays with the shapes of ``like`` — a list of
    arrays or a list of shape tuples (e.g. ``model.param_shapes``); traceable."""
    shapes = [tuple(s) if isinstance(s, (tuple, list)) else tuple(np.shape(s)) for s in like]
    sizes = [int(np.prod(s)) for s in shapes]
    if np.ndim(theta) != 1 or np.shape(theta)[0] != sum(sizes):
        raise ValueError(
            f"theta must be a 1-D vector of length {sum(sizes)} (the total size of "
            f"{len(shapes)} arrays), got shape {_shape_str(np.shape(theta))}"
        )
    out, start = [], 0
    for shape, size in zip(shapes, sizes):
        out.append(anp.reshape(theta[start : start + size], shape))
        start += size
    return out
