"""Few-shot classification: N-way K-shot episodes and Prototypical Networks (lesson 10).

An episode poses a small problem: N classes, K labelled images of each (the *support* set) and
other images of the same classes to classify (the *query* set). A Prototypical Network (Snell et al.,
2017) embeds every image, averages each class's support embeddings into a *prototype* and gives a query
the class of its nearest prototype. With a frozen encoder this needs no training at all: embed the
dataset once, then run many episodes on the embeddings.

    feats, labels = cvlab.transfer.extract_features(encoder, test_set)       # (N, D), (N,)
    result = fewshot.evaluate(feats, labels, n_way=5, k_shot=1, n_episodes=600)
    result["accuracy"], result["ci95"]     # mean query accuracy over episodes, 95% confidence half-width
"""
from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch

__all__ = ["Episode", "episodes", "prototypes", "prototype_logits", "evaluate"]


@dataclass(frozen=True)
class Episode:
    """One N-way K-shot problem, as indices into the dataset it was drawn from.

    ``classes`` (N,) are the dataset's labels of the episode's classes, in episode order; ``support``
    (N*K,) and ``query`` (N*Q,) are dataset indices, class by class; ``support_labels`` and
    ``query_labels`` are the episode's own labels 0..N-1 (position in ``classes``).
    """
    classes: torch.Tensor
    support: torch.Tensor
    query: torch.Tensor
    support_labels: torch.Tensor
    query_labels: torch.Tensor


def episodes(labels: torch.Tensor, *, n_way: int, k_shot: int, n_query: int = 15, n_episodes: int = 100,
             classes: Sequence[int] | None = None, seed: int = 0) -> Iterator[Episode]:
    """``n_episodes`` random episodes over ``labels`` (a dataset's (N,) labels; pass ``dataset.labels``).

    Each picks ``n_way`` of ``classes`` (default: every label present), then ``k_shot`` support and
    ``n_query`` query images of each class, all different images. The same ``seed`` gives the same episodes.
    """
    labels = torch.as_tensor(labels).cpu()
    pool = torch.unique(labels) if classes is None else torch.as_tensor(list(classes))
    if n_way < 2 or k_shot < 1 or n_query < 1 or n_episodes < 1:
        raise ValueError(f"episodes need n_way >= 2, k_shot >= 1, n_query >= 1 and n_episodes >= 1; got {n_way}, "
                         f"{k_shot}, {n_query}, {n_episodes}")
    if n_way > len(pool):
        raise ValueError(f"n_way={n_way} but only {len(pool)} classes to choose from ({pool.tolist()})")
    members = {int(c): torch.nonzero(labels == c)[:, 0] for c in pool}
    short = {c: len(idx) for c, idx in members.items() if len(idx) < k_shot + n_query}
    if short:
        raise ValueError(f"each class needs k_shot + n_query = {k_shot + n_query} images; these have fewer "
                         f"(class: count): {short}. Lower k_shot or n_query, or leave those classes out.")
    g = torch.Generator().manual_seed(seed)
    ranks = torch.arange(n_way)
    for _ in range(n_episodes):
        chosen = pool[torch.randperm(len(pool), generator=g)[:n_way]]
        picks = [members[int(c)][torch.randperm(len(members[int(c)]), generator=g)[:k_shot + n_query]] for c in chosen]
        yield Episode(classes=chosen,
                      support=torch.cat([p[:k_shot] for p in picks]), query=torch.cat([p[k_shot:] for p in picks]),
                      support_labels=ranks.repeat_interleave(k_shot), query_labels=ranks.repeat_interleave(n_query))


def prototypes(features: torch.Tensor, labels: torch.Tensor, n_classes: int) -> torch.Tensor:
    """The mean feature of each class: (n_classes, D) from (M, D) features and (M,) labels in 0..n_classes-1."""
    counts = torch.bincount(labels, minlength=n_classes)
    if (counts == 0).any():
        raise ValueError(f"every class needs a support example; classes {torch.nonzero(counts == 0)[:, 0].tolist()} have none")
    sums = torch.zeros(n_classes, features.shape[1], dtype=features.dtype, device=features.device)
    return sums.index_add_(0, labels, features) / counts.unsqueeze(1).to(features.dtype)


def prototype_logits(protos: torch.Tensor, queries: torch.Tensor, metric: str = "euclidean") -> torch.Tensor:
    """(Q, N) scores of each query for each prototype, higher is nearer: minus the squared Euclidean distance
    (the Prototypical Networks paper's choice) or the cosine similarity."""
    if metric == "euclidean":
        return -torch.cdist(queries, protos).pow(2)
    if metric == "cosine":
        return torch.nn.functional.normalize(queries, dim=1) @ torch.nn.functional.normalize(protos, dim=1).T
    raise ValueError(f"metric must be 'euclidean' or 'cosine'; got {metric!r}")


def evaluate(features: torch.Tensor, labels: torch.Tensor, *, n_way: int = 5, k_shot: int = 1, n_query: int = 15,
             n_episodes: int = 600, classes: Sequence[int] | None = None, metric: str = "euclidean",
             seed: int = 0) -> dict:
    """Nearest-prototype accuracy over random episodes on precomputed ``features`` (N, D) with ``labels`` (N,).

    Returns ``accuracy`` (the mean over episodes), ``ci95`` (1.96 standard errors: the accuracy is within
    ``accuracy ± ci95`` with 95% confidence) and the per-episode ``accuracies``.
    """
    if len(features) != len(labels):
        raise ValueError(f"{len(features)} feature rows but {len(labels)} labels; they must match")
    features = features.float()
    accs = []
    for ep in episodes(labels, n_way=n_way, k_shot=k_shot, n_query=n_query, n_episodes=n_episodes,
                       classes=classes, seed=seed):
        protos = prototypes(features[ep.support], ep.support_labels.to(features.device), n_way)
        predicted = prototype_logits(protos, features[ep.query], metric).argmax(1)
        accs.append((predicted == ep.query_labels.to(features.device)).float().mean().cpu())
    accs = torch.stack(accs)
    ci95 = 1.96 * accs.std().item() / math.sqrt(len(accs)) if len(accs) > 1 else float("nan")
    return {"accuracy": accs.mean().item(), "ci95": ci95, "accuracies": accs}
