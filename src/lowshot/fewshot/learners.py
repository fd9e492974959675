"""Meta-learners: one interface for every method trained on episodes.

A learner is an ``nn.Module`` with

- ``embed(x) -> (n, d)``: what can be computed per example and cached (the encoder's
  output; the raw input for MAML and Reptile, which adapt the whole network);
- ``logits(zs, ys, zq) -> (n_query, ways)``: classify a query set given a labelled
  support set, from embeddings; differentiable, used in meta-training;
- ``episode_loss(xs, ys, xq, yq) -> (loss, accuracy)``: one meta-training step's loss;
- ``predict(zs, ys, zq)``: ``logits`` at test time (with the test-time inner loop
  for gradient-based methods).

Adding a method is a class with ``logits`` (and ``loss`` if not cross-entropy)
registered with ``@register_method(name, family="meta")``.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from lowshot.errors import ConfigError
from lowshot.registry import register_method


class MetaLearner(nn.Module):
    """Base class. ``track_stats``: whether the encoder's BatchNorm keeps running
    statistics (per-example embeddings) or always normalises with the batch's own
    (MAML, Reptile: transductive, as in their papers). ``embeds``: whether ``embed`` gives
    a learnt embedding (False: the input itself, for learners that adapt their whole
    network in each episode)."""

    embeds = True
    track_stats = True
    needs_maps = False
    transductive = False
    fixed_ways = False  # the learner's output layer has one unit per episode class

    def __init__(
        self,
        encoder: nn.Module,
        ways: int = 5,
        input_shape: tuple[int, ...] | None = None,
        **_: Any,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.ways = ways
        self.input_shape = None if input_shape is None else tuple(input_shape)

    def unflatten(self, z: torch.Tensor) -> torch.Tensor:
        """Inputs back from their flat (cacheable) form."""
        if self.input_shape is None:
            raise ConfigError("this learner needs input_shape (the shape of one input).")
        return z.view(len(z), *self.input_shape)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x).flatten(1)  # type: ignore[no-any-return]

    def logits(self, zs: torch.Tensor, ys: torch.Tensor, zq: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def loss(self, logits: torch.Tensor, yq: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, yq)

    def check_ways(self, ways: int) -> None:
        if self.fixed_ways and ways != self.ways:
            raise ConfigError(
                f"this learner was meta-trained on {self.ways}-way episodes and its output "
                f"layer has {self.ways} units; evaluate with --ways {self.ways} or meta-train "
                f"with --ways {ways}."
            )

    def episode_loss(
        self, xs: torch.Tensor, ys: torch.Tensor, xq: torch.Tensor, yq: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.embed(torch.cat([xs, xq]))
        lg = self.logits(z[: len(xs)], ys, z[len(xs) :])
        return self.loss(lg, yq), (lg.argmax(1) == yq).float().mean()

    def predict(self, zs: torch.Tensor, ys: torch.Tensor, zq: torch.Tensor) -> torch.Tensor:
        self.check_ways(int(ys.max()) + 1)
        with torch.no_grad():
            return self.logits(zs, ys, zq)

    def optimizer(self, lr: float, epochs: int) -> dict:
        opt = torch.optim.Adam(self.parameters(), lr=lr)
        sched = torch.optim.lr_scheduler.StepLR(opt, max(1, epochs // 3), 0.5)
        return {"optimizer": opt, "lr_scheduler": sched}


def _ways(ys: torch.Tensor) -> int:
    return int(ys.max()) + 1


def class_means(z: torch.Tensor, ys: torch.Tensor, ways: int) -> torch.Tensor:
    onehot = F.one_hot(ys, ways).to(z.dtype)
    return (onehot.T @ z) / onehot.sum(0)[:, None]


@register_method("protonet", family="meta")
class ProtoNet(MetaLearner):
    """Prototypical Networks (Snell et al., NeurIPS 2017): an embedding trained so that
    each query is nearest the mean embedding (prototype) of its class's support;
    logits are minus squared Euclidean distances."""

    def logits(self, zs: torch.Tensor, ys: torch.Tensor, zq: torch.Tensor) -> torch.Tensor:
        return -torch.cdist(zq, class_means(zs, ys, _ways(ys))).pow(2)


@register_method("matchingnet", family="meta")
class MatchingNet(MetaLearner):
    """Matching Networks (Vinyals et al., NeurIPS 2016): a query's class distribution is
    the attention-weighted sum of the support labels, attention a softmax over cosine
    similarities (times ``temperature``). ``fce=True`` adds full context embeddings:
    a bidirectional LSTM over the support and an attention LSTM of ``fce_steps``
    read-outs for each query."""

    def __init__(
        self,
        encoder: nn.Module,
        ways: int = 5,
        dim: int = 64,
        temperature: float = 10.0,
        fce: bool = False,
        fce_steps: int = 3,
        **_: Any,
    ) -> None:
        super().__init__(encoder, ways)
        self.temperature, self.fce, self.fce_steps = temperature, fce, fce_steps
        if fce:
            self.g_lstm = nn.LSTM(dim, dim, batch_first=True, bidirectional=True)
            self.f_cell = nn.LSTMCell(dim, dim)

    def _context(self, zs: torch.Tensor, zq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h, _ = self.g_lstm(zs[None])
        d = zs.shape[1]
        g = zs + h[0, :, :d] + h[0, :, d:]
        hq, cq = torch.zeros_like(zq), torch.zeros_like(zq)
        r = torch.zeros_like(zq)
        for _ in range(self.fce_steps):
            hq, cq = self.f_cell(zq, (hq + r, cq))
            hq = hq + zq
            r = torch.softmax(hq @ g.T, 1) @ g
        return g, hq

    def logits(self, zs: torch.Tensor, ys: torch.Tensor, zq: torch.Tensor) -> torch.Tensor:
        if self.fce:
            zs, zq = self._context(zs, zq)
        att = torch.softmax(self.temperature * F.normalize(zq, dim=1) @ F.normalize(zs, dim=1).T, 1)
        probs = att @ F.one_hot(ys, _ways(ys)).to(att.dtype)
        return torch.log(probs.clamp_min(1e-8))


@register_method("relationnet", family="relation")
class RelationNet(MetaLearner):
    """Relation Networks (Sung et al., CVPR 2018): the sum of a class's support feature
    maps, concatenated with a query's, goes through a learned relation module (two
    conv blocks and a 2-layer MLP ending in a sigmoid) scored by MSE against one-hot."""

    needs_maps = True

    def __init__(
        self,
        encoder: nn.Module,
        ways: int = 5,
        feat_shape: tuple[int, ...] = (64, 7, 7),
        hidden: int = 8,
        **_: Any,
    ) -> None:
        super().__init__(encoder, ways)
        from lowshot.fewshot.encoders import conv_block

        c, h, w = feat_shape
        self.feat_shape = tuple(feat_shape)
        self.relation = nn.Sequential(
            conv_block(2 * c, c, pool=h >= 2), conv_block(c, c, pool=h >= 4)
        )
        with torch.no_grad():
            self.relation.eval()
            n = self.relation(torch.zeros(1, 2 * c, h, w)).numel()
            self.relation.train()
        self.fc = nn.Sequential(nn.Linear(n, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def logits(self, zs: torch.Tensor, ys: torch.Tensor, zq: torch.Tensor) -> torch.Tensor:
        ways = _ways(ys)
        fs = zs.view(len(zs), *self.feat_shape)
        fq = zq.view(len(zq), *self.feat_shape)
        cls = torch.einsum("nk,nchw->kchw", F.one_hot(ys, ways).to(fs.dtype), fs)
        nq = len(fq)
        pairs = torch.cat(
            [cls[None].expand(nq, -1, -1, -1, -1), fq[:, None].expand(-1, ways, -1, -1, -1)], 2
        ).reshape(nq * ways, 2 * self.feat_shape[0], *self.feat_shape[1:])
        score = self.fc(self.relation(pairs).flatten(1))
        return torch.sigmoid(score).view(nq, ways)

    def loss(self, logits: torch.Tensor, yq: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(logits, F.one_hot(yq, logits.shape[1]).to(logits.dtype))


@register_method("gnn", family="relation")
class GNN(MetaLearner):
    """Few-shot graph neural network (Garcia & Bruna, ICLR 2018), transductive: one
    graph per episode whose nodes are the support and query embeddings, each with its
    one-hot label (uniform for queries). Every layer learns the adjacency from
    ``|x_i - x_j|`` with an MLP (softmax over neighbours), applies a graph convolution
    over {identity, adjacency} and concatenates its output to the node features; the
    last layer outputs class scores for the query nodes."""

    transductive = True
    fixed_ways = True

    def __init__(
        self,
        encoder: nn.Module,
        ways: int = 5,
        dim: int = 64,
        node_dim: int = 48,
        layers: int = 2,
        edge_hidden: int = 64,
        **_: Any,
    ) -> None:
        super().__init__(encoder, ways)
        d = dim + ways
        self.edges = nn.ModuleList()
        self.convs = nn.ModuleList()
        for i in range(layers + 1):
            self.edges.append(
                nn.Sequential(
                    nn.Linear(d, edge_hidden),
                    nn.LeakyReLU(0.2),
                    nn.Linear(edge_hidden, edge_hidden),
                    nn.LeakyReLU(0.2),
                    nn.Linear(edge_hidden, 1),
                )
            )
            last = i == layers
            out = ways if last else node_dim
            self.convs.append(nn.Linear(2 * d, out))
            if not last:
                d += node_dim
        self.norms = nn.ModuleList(nn.BatchNorm1d(node_dim) for _ in range(layers))

    def logits(self, zs: torch.Tensor, ys: torch.Tensor, zq: torch.Tensor) -> torch.Tensor:
        self.check_ways(_ways(ys))
        lab = torch.cat(
            [
                F.one_hot(ys, self.ways).to(zs.dtype),
                torch.full((len(zq), self.ways), 1.0 / self.ways, dtype=zs.dtype, device=zs.device),
            ]
        )
        x = torch.cat([torch.cat([zs, zq]), lab], 1)
        eye = torch.eye(len(x), dtype=torch.bool, device=x.device)
        for i, (edge, conv) in enumerate(zip(self.edges, self.convs, strict=True)):
            a = edge((x[:, None] - x[None]).abs()).squeeze(-1).masked_fill(eye, float("-inf"))
            h = conv(torch.cat([x, torch.softmax(a, 1) @ x], 1))
            if i == len(self.norms):
                return h[len(zs) :]
            x = torch.cat([x, F.leaky_relu(self.norms[i](h), 0.2)], 1)
        raise AssertionError("unreachable")


class _Headed(MetaLearner):
    """Encoder + linear head with one unit per episode class (MAML family)."""

    fixed_ways = True

    def __init__(self, encoder: nn.Module, ways: int = 5, dim: int = 64, **kw: Any) -> None:
        super().__init__(encoder, ways, kw.get("input_shape"))
        self.head = nn.Linear(dim, ways)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x).flatten(1))  # type: ignore[no-any-return]


def _inner_sgd(
    module: nn.Module,
    params: dict[str, torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
    steps: int,
    lr: float,
    create_graph: bool,
) -> dict[str, torch.Tensor]:
    """``steps`` plain gradient steps on ``params`` (a functional copy of ``module``'s)."""
    for _ in range(steps):
        loss = F.cross_entropy(functional_call(module, params, (x,)), y)
        grads = torch.autograd.grad(loss, list(params.values()), create_graph=create_graph)
        params = {k: v - lr * g for (k, v), g in zip(params.items(), grads, strict=True)}
    return params


@register_method("maml", family="meta")
class MAML(_Headed):
    """Model-Agnostic Meta-Learning (Finn et al., ICML 2017): meta-learn an
    initialisation from which ``inner_steps`` SGD steps (step ``inner_lr``) on the
    support minimise the query loss. Second order by default (back-propagates through
    the inner loop); ``first_order=True`` drops those second derivatives (FOMAML).
    BatchNorm uses each batch's statistics (no running statistics), as in the paper.
    Defaults are the paper's Omniglot 5-way settings (1 step of 0.4; 3 at test); its
    20-way ones are ``inner_steps=5, inner_lr=0.1``."""

    embeds = False
    track_stats = False
    transductive = True

    def __init__(
        self,
        encoder: nn.Module,
        ways: int = 5,
        dim: int = 64,
        inner_steps: int = 1,
        inner_lr: float = 0.4,
        test_steps: int = 3,
        first_order: bool = False,
        **kw: Any,
    ) -> None:
        super().__init__(encoder, ways, dim, **kw)
        self.inner_steps, self.inner_lr, self.test_steps = inner_steps, inner_lr, test_steps
        self.first_order = first_order

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)  # the whole network adapts per episode: nothing to cache

    def logits(
        self, zs: torch.Tensor, ys: torch.Tensor, zq: torch.Tensor, steps: int | None = None
    ) -> torch.Tensor:
        self.check_ways(_ways(ys))
        params: dict[str, torch.Tensor] = dict(self.named_parameters())
        params = _inner_sgd(
            self,
            params,
            self.unflatten(zs),
            ys,
            self.inner_steps if steps is None else steps,
            self.inner_lr,
            create_graph=self.training and not self.first_order,
        )
        return functional_call(self, params, (self.unflatten(zq),))  # type: ignore[no-any-return]

    def episode_loss(
        self, xs: torch.Tensor, ys: torch.Tensor, xq: torch.Tensor, yq: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        self.input_shape = tuple(xs.shape[1:])  # type: ignore[assignment]
        lg = self.logits(xs.flatten(1), ys, xq.flatten(1))
        return F.cross_entropy(lg, yq), (lg.argmax(1) == yq).float().mean()

    def predict(self, zs: torch.Tensor, ys: torch.Tensor, zq: torch.Tensor) -> torch.Tensor:
        with torch.enable_grad():
            lg = self.logits(zs, ys, zq, steps=self.test_steps)
        return lg.detach()


@register_method("fomaml", family="meta")
class FOMAML(MAML):
    """First-order MAML (Finn et al., 2017, section 5.2): MAML without the second
    derivatives through the inner loop; cheaper in memory and time."""

    def __init__(self, encoder: nn.Module, **kw: Any) -> None:
        kw["first_order"] = True
        super().__init__(encoder, **kw)


@register_method("anil", family="meta")
class ANIL(MAML):
    """Almost No Inner Loop (Raghu et al., ICLR 2020): MAML whose inner loop adapts only
    the linear head; the encoder is meta-learned through the outer loop. As in MAML (and
    Raghu et al., who keep MAML's set-up), the encoder normalises each episode with its
    own batch statistics: with running statistics instead, so that embeddings could be
    cached per example, a 5-way 1-shot Omniglot learner scored 65.5% where the same
    weights reach 81%. The encoder runs once per episode; the head's steps are cheap, and
    10 of them at test (MAML's Omniglot step of 0.4 otherwise) scored best on episodes of
    the meta-training classes (1: 89.6%, 3: 87.2%, 10: 92.7%, 20: 92.9%)."""

    def __init__(self, encoder: nn.Module, test_steps: int = 10, **kw: Any) -> None:
        super().__init__(encoder, test_steps=test_steps, **kw)

    def logits(
        self, zs: torch.Tensor, ys: torch.Tensor, zq: torch.Tensor, steps: int | None = None
    ) -> torch.Tensor:
        self.check_ways(_ways(ys))
        with torch.set_grad_enabled(self.training):  # at test only the head adapts
            z = self.encoder(torch.cat([self.unflatten(zs), self.unflatten(zq)])).flatten(1)
        params: dict[str, torch.Tensor] = dict(self.head.named_parameters())
        params = _inner_sgd(
            self.head, params, z[: len(zs)], ys, self.inner_steps if steps is None else steps,
            self.inner_lr, create_graph=self.training and not self.first_order,
        )  # fmt: skip
        return functional_call(self.head, params, (z[len(zs) :],))  # type: ignore[no-any-return]


@register_method("reptile", family="meta")
class Reptile(_Headed):
    """Reptile (Nichol et al., 2018): train a copy of the network on the episode for
    ``inner_steps`` Adam steps, then move the initialisation towards the adapted
    weights, ``theta += eps (phi - theta)``, with ``eps`` = the outer learning rate,
    annealed linearly to 0. The outer step is taken by SGD on the surrogate loss
    ``||theta - phi||^2 / 2``, whose gradient is ``theta - phi``. At test time the copy
    trains on the support for ``test_steps`` steps."""

    embeds = False
    track_stats = False
    transductive = True

    def __init__(
        self,
        encoder: nn.Module,
        ways: int = 5,
        dim: int = 64,
        inner_steps: int = 5,
        inner_lr: float = 1e-3,
        test_steps: int = 10,
        **kw: Any,
    ) -> None:
        super().__init__(encoder, ways, dim, **kw)
        self.inner_steps, self.inner_lr, self.test_steps = inner_steps, inner_lr, test_steps

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)

    def _adapted(self, x: torch.Tensor, y: torch.Tensor, steps: int) -> nn.Module:
        fast = copy.deepcopy(self)
        opt = torch.optim.Adam(fast.parameters(), lr=self.inner_lr, betas=(0.0, 0.999))
        with torch.enable_grad():
            for _ in range(steps):
                opt.zero_grad()
                F.cross_entropy(fast(x), y).backward()
                opt.step()
        return fast

    def episode_loss(
        self, xs: torch.Tensor, ys: torch.Tensor, xq: torch.Tensor, yq: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        self.input_shape = tuple(xs.shape[1:])  # type: ignore[assignment]
        fast = self._adapted(torch.cat([xs, xq]), torch.cat([ys, yq]), self.inner_steps)
        with torch.no_grad():  # how well the adapted copy fits the episode's queries
            acc = (fast(xq).argmax(1) == yq).float().mean()
        loss = sum(
            ((p - q.detach()) ** 2).sum() / 2
            for p, q in zip(self.parameters(), fast.parameters(), strict=True)
        )
        return loss, acc  # type: ignore[return-value]

    def logits(self, zs: torch.Tensor, ys: torch.Tensor, zq: torch.Tensor) -> torch.Tensor:
        self.check_ways(_ways(ys))
        fast = self._adapted(self.unflatten(zs), ys, self.test_steps)
        with torch.no_grad():
            return fast(self.unflatten(zq))  # type: ignore[no-any-return]

    def predict(self, zs: torch.Tensor, ys: torch.Tensor, zq: torch.Tensor) -> torch.Tensor:
        return self.logits(zs, ys, zq)

    def optimizer(self, lr: float, epochs: int) -> dict:
        opt = torch.optim.SGD(self.parameters(), lr=lr)
        sched = torch.optim.lr_scheduler.LinearLR(opt, 1.0, 1.0 / max(2, epochs), epochs)
        return {"optimizer": opt, "lr_scheduler": sched}


DEFAULT_LR = {"reptile": 1.0}


def learner_params(name: str) -> list[str]:
    """Constructor keywords a learner accepts (for ``-p key=value`` validation)."""
    import inspect

    from lowshot.registry import get_method

    cls: Any = get_method(name).factory
    names: list[str] = []
    for c in cls.__mro__:
        if c is nn.Module:
            break
        if "__init__" in c.__dict__:
            sig = inspect.signature(c.__dict__["__init__"])
            names += [p for p in sig.parameters if p not in ("self", "encoder", "_", "kw")]
    return sorted(set(names))


def is_learner(name: str) -> bool:
    from lowshot.registry import get_method

    f = get_method(name).factory
    return isinstance(f, type) and issubclass(f, MetaLearner)
