"""Choose which real avatar frame shows the mouth for each output frame: fit against smooth motion.

Why a Viterbi over a short look-ahead: picking the best-fitting frame independently per output frame makes
the mouth flicker between unrelated source frames; strong smoothing freezes it. The probe found a mild
setting that moves as smoothly as real video without losing lip-sync: a jump to an unrelated frame costs
~0.5, continuing with the next source frame earns a bonus ~1. The look-ahead is one batch (the engine's
0.2 s latency budget); the last choice is kept as state so batches join without a seam.

Why a pose term (issue 19): a mouth from a frame with another head pose brings that pose's cheek and jaw
outline with it. Given the avatar frame each output frame is built on (`targets`), the fit also counts the
distance between the two frames' pose shapes (geometry.pose_features), in units of the footage's own pose
spread; and the shown frame itself is always a candidate (on equal terms: a bonus for it cost lip-sync, r
0.35 -> 0.34 median on the shared clips): when its own mouth fits best, nothing is transplanted.
"""
from __future__ import annotations

import numpy as np

DESCRIPTOR_WEIGHTS = np.array([1.0, 0.35, 0.5], np.float32)  # opening matters most


class FrameChooser:
    """Stateful chooser over library frames `allowed` (indices into `descriptors`)."""

    def __init__(self, descriptors: np.ndarray, scale: np.ndarray, allowed: np.ndarray,
                 top_k: int = 10, jump_cost: float = 0.5, consecutive_bonus: float = 1.0,
                 pose: np.ndarray | None = None, pose_weight: float = 1.0, native_bonus: float = 0.0):
        self.descriptors = np.asarray(descriptors, np.float32)
        self.scale = np.asarray(scale, np.float32)
        self.allowed = np.flatnonzero(allowed) if np.asarray(allowed).dtype == bool else np.asarray(allowed)
        if self.allowed.size == 0:
            self.allowed = np.arange(len(self.descriptors))
        self.is_allowed = np.zeros(len(self.descriptors), bool)
        self.is_allowed[self.allowed] = True
        self.top_k = min(top_k, self.allowed.size)
        self.jump_cost = jump_cost
        self.bonus = consecutive_bonus
        self._lib = self.descriptors[self.allowed] / self.scale
        self.pose = None if pose is None else np.asarray(pose, np.float32)
        if self.pose is not None:
            lib_pose = self.pose[self.allowed]
            spread = float(((lib_pose - lib_pose.mean(0)) ** 2).sum(1).mean()) if len(lib_pose) > 1 else 0.0
            self._pose_norm = 1.0 / max(spread, 1e-6)
        self.pose_weight = pose_weight
        self.native_bonus = native_bonus
        self.last: int | None = None

    def reset(self) -> None:
        self.last = None

    def fit_cost(self, pred: np.ndarray, frames: np.ndarray, target: int | None = None) -> np.ndarray:
        diff = self.descriptors[frames] / self.scale - pred / self.scale
        cost = (diff ** 2 * DESCRIPTOR_WEIGHTS).sum(-1)
        if target is not None:
            cost = cost + self.pose_cost(frames, target)
            cost[frames == target] -= self.native_bonus
        return cost

    def pose_cost(self, frames: np.ndarray, target: int) -> np.ndarray:
        """How far each candidate's head pose is from the shown frame's (0 without pose data)."""
        if self.pose is None or self.pose_weight <= 0 or not 0 <= target < len(self.pose):
            return np.zeros(len(frames), np.float32)
        d = ((self.pose[frames] - self.pose[target]) ** 2).sum(-1)
        return (self.pose_weight * self._pose_norm * d).astype(np.float32)

    def transition(self, prev: np.ndarray, cur: np.ndarray) -> np.ndarray:
        """(P,) x (C,) -> (P,C) cost of showing cur right after prev."""
        step = cur[None, :] - prev[:, None]
        cost = np.full(step.shape, self.jump_cost, np.float32)
        cost[step == 1] = -self.bonus
        cost[(step == 0) | (step == -1)] = -0.5 * self.bonus
        return cost

    def choose(self, preds: np.ndarray, targets: np.ndarray | None = None) -> np.ndarray:
        """(T,3) predicted descriptors -> (T,) chosen library frame indices; updates the state.

        targets: (T,) the avatar frame each output frame is built on (pose term and native candidate), or None;
        -1 for a frame that is not one of the library's (an action clip's frame).
        """
        preds = np.asarray(preds, np.float32)
        steps: list[tuple[np.ndarray, np.ndarray, np.ndarray | None]] = []  # (candidates, score, backpointer)
        prev_cands = None if self.last is None else np.array([self.last])
        prev_score = None if self.last is None else np.zeros(1, np.float32)
        for t, pred in enumerate(preds):
            target = None if targets is None or targets[t] < 0 else int(targets[t])
            cands = self._candidates(pred, prev_cands, target)
            fit = self.fit_cost(pred, cands, target)
            if prev_cands is None:
                score, back = fit, None
            else:
                total = prev_score[:, None] + self.transition(prev_cands, cands)
                back = np.argmin(total, axis=0)  # argmin picks the first minimum: deterministic
                score = total[back, np.arange(len(cands))] + fit
            steps.append((cands, score, back))
            prev_cands, prev_score = cands, score
        if not steps:
            return np.zeros(0, np.int64)
        path = np.empty(len(steps), np.int64)
        j = int(np.argmin(steps[-1][1]))
        for t in range(len(steps) - 1, -1, -1):
            cands, _, back = steps[t]
            path[t] = cands[j]
            if back is not None:
                j = int(back[j])
        self.last = int(path[-1])
        return path

    def _candidates(self, pred: np.ndarray, prev: np.ndarray | None, target: int | None = None) -> np.ndarray:
        d = ((self._lib - pred / self.scale) ** 2 * DESCRIPTOR_WEIGHTS).sum(-1)
        if target is not None:
            d = d + self.pose_cost(self.allowed, target)
        k = self.top_k
        best = self.allowed[np.argpartition(d, k - 1)[:k]] if k < d.size else self.allowed
        if target is not None and 0 <= target < len(self.descriptors) and self.is_allowed[target]:
            best = np.append(best, target)
        if prev is None:
            return np.unique(best)
        follow = np.concatenate([prev + 1, prev])
        follow = follow[(follow >= 0) & (follow < len(self.descriptors))]
        follow = follow[self.is_allowed[follow]]
        cands = np.unique(np.concatenate([best, follow]))
        if len(cands) > 4 * k:  # bound the state space: keep the best fits among the followers
            fits = self.fit_cost(pred, cands, target)
            cands = np.unique(np.concatenate([best, cands[np.argsort(fits, kind="stable")[:3 * k]]]))
        return cands
