"""Optimizers: torch.optim's update rules, each step one fused C/OpenMP pass.

Two styles, as in the course notes and in PyTorch:

- Objects (`SGD`, `Adagrad`, `RMSprop`, `Adam`, `AdamW`) over `fastfc.Parameter`s:

      opt = fastfc.optim.Adam(model.param_groups(weight_decay=1e-4), lr=1e-3)
      ...backward fills every p.grad...
      opt.step(); opt.zero_grad()

  Constructor arguments, defaults, param groups and update formulas are
  torch.optim's, so a recipe moves between the two and, given the same groups
  and gradients, follows the same trajectory (to float rounding).
  `state_dict()` holds only NumPy arrays and numbers; `flatten_state_dict`
  turns it into a flat dict that `np.savez` stores without pickling, and
  `load_state_dict` takes either form (e.g. `np.load(path)` directly).

- Course-style rules `sgd`, `sgd_momentum`, `rmsprop`, `adam`:
  `next_w, config = rule(w, dw, config)`, with the course notes' config keys
  and defaults. `next_w` is `w` itself, updated in place, when `w` is a
  C-contiguous float array. `course_step(rule, ws, dws, configs)` applies
  one to a whole list of parameters in one C call (what fastfc.cs231n's
  Solver does).
"""
import functools
import numbers
from collections.abc import Mapping

import numpy as np

from . import _optim
from ._validation import check_int, check_probability, check_real, check_unmasked
from .parameter import Parameter

__all__ = ["Optimizer", "SGD", "Adagrad", "RMSprop", "Adam", "AdamW", "OPTIMIZERS", "UPDATE_RULES",
           "MOMENTUM_RULES", "course_step",
           "sgd", "sgd_momentum", "rmsprop", "adam",
           "flatten_state_dict", "unflatten_state_dict"]


# ---- hyperparameter checks: each returns the value as the group stores it ----

# Finite numbers; >= 0; in [0, 1) (the betas, the course's decay rate).
_number = check_real
_nonnegative = functools.partial(check_real, low=0)
_beta = check_probability


def _flag(name, value):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def _betas(name, value):
    try:
        beta1, beta2 = value
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a pair (beta1, beta2), got {value!r}") from None
    return (_beta(f"{name}[0]", beta1), _beta(f"{name}[1]", beta2))


# Step counts above this are refused when loaded: the kernels take the count
# as int64 and the bias corrections use it as a double (exact up to 2**53).
_MAX_STEP = 2**53


def _byte_range(a):
    """[start, end) of the memory a spans (for a strided view, everything
    between its first and last element), or None when a is empty. A
    subclass is measured as its base-class array (its .shape may lie)."""
    a = np.ndarray.view(a, np.ndarray)
    if a.size == 0:
        return None
    start = end = a.__array_interface__["data"][0]
    for n, stride in zip(a.shape, a.strides):
        if stride < 0:
            start += (n - 1) * stride
        else:
            end += (n - 1) * stride
    return start, end + a.itemsize


def _check_apart(params, where_of):
    """ValueError naming both when two of params hold overlapping memory: the
    fused step hands blocks of each to different threads, which would then
    read-modify-write the same elements at once. where_of(i) names params[i].
    Sorted by address, so n parameters cost n log n."""
    ranges = sorted((r, i) for i, p in enumerate(params)
                    if isinstance(p.data, np.ndarray) and (r := _byte_range(p.data)) is not None)
    for ((_, end), i), ((start, _), j) in zip(ranges, ranges[1:]):
        if start < end:
            a, b = sorted((i, j))
            raise ValueError(f"{where_of(a)} ({params[a].name!r}) and {where_of(b)} "
                             f"({params[b].name!r}) share memory (views of one array?); "
                             "each parameter must have its own")


def _loaded_step(value, where):
    """A saved step count as an int in [0, _MAX_STEP]; torch saves it as a
    float tensor, so whole floats are accepted, and nothing is truncated."""
    if isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_)):
        step = int(value)  # any size: one past int64 is out of range, not of the wrong type
    else:
        arr = np.asarray(value)
        if arr.shape != () or arr.dtype.kind not in "iuf":
            raise TypeError(f"{where} must be a whole number, got {value!r}")
        step = arr.item()
    if isinstance(step, float) and not step.is_integer():
        raise ValueError(f"{where} must be a whole number, got {step!r}")
    if not 0 <= step <= _MAX_STEP:
        raise ValueError(f"{where} must be in [0, 2**53], got {step!r}")
    return int(step)


class Optimizer:
    """Base class: param groups, per-parameter state, step(), zero_grad(),
    state_dict() and load_state_dict(), as torch.optim.Optimizer.

    Inputs:
    - params: an iterable of fastfc.Parameter, or of dicts {"params": [...],
      <hyperparameter>: value, ...} (param groups) whose values override the
      defaults for their parameters; a group may also carry a "name" string.
    - defaults: every hyperparameter of the rule with its value.

    Attributes:
    - param_groups: list of dicts, each with "params" and every hyperparameter
      (change e.g. group["lr"] between steps to schedule the learning rate)
    - state: dict Parameter -> dict of that parameter's state ("step" and the
      state arrays, allocated at its first step and then updated in place)

    Hyperparameters are checked when given, when loaded, and at each step for
    the groups whose values or parameters changed since (a scheduled lr = NaN
    or betas = (1, 1) would turn every parameter into NaN); parameters must
    not share memory (see _check_apart).

    Subclasses define _HYPERPARAMETERS (name -> check), _STATE (state array
    name -> whether it must be >= 0), _state_slots(group), and
    _update(group, datas, grads, states, steps, owners).
    """

    _HYPERPARAMETERS = {}
    _STATE = {}
    _counts_steps = True  # torch's SGD keeps no step count; the others do

    def __init__(self, params, defaults):
        self.defaults = self._checked(defaults, "defaults")
        self._check_combination(self.defaults)
        self.param_groups = []
        self.state = {}
        self._checked_groups = []  # per group, what _snapshot gave when last checked
        if isinstance(params, (Parameter, np.ndarray, dict)):
            raise TypeError("params must be an iterable of Parameters or of param-group "
                            f"dicts, got a single {type(params).__name__}")
        try:
            groups = list(params)
        except TypeError:
            raise TypeError("params must be an iterable of Parameters or of param-group "
                            f"dicts, got {type(params).__name__}") from None
        if not groups:
            raise ValueError("params is empty: the optimizer needs at least one Parameter")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)

    def _checked(self, values, where):
        """values with every hyperparameter checked and normalized."""
        out = {}
        for key, value in values.items():
            check = self._HYPERPARAMETERS.get(key)
            if check is None:
                known = ", ".join(sorted(self._HYPERPARAMETERS))
                raise ValueError(f"unknown hyperparameter {key!r} in {where} for "
                                 f"{type(self).__name__} (it takes {known})")
            out[key] = check(key, value)
        return out

    def _check_combination(self, group):
        """Checks between the hyperparameters of a whole group (SGD's nesterov)."""

    def add_param_group(self, param_group):
        """Adds a group {"params": [...], <hyperparameter overrides>}: its
        parameters are trained with the defaults updated by the overrides."""
        if not isinstance(param_group, dict):
            raise TypeError(f"a param group must be a dict, got {type(param_group).__name__}")
        if "params" not in param_group:
            raise ValueError("a param group needs a 'params' entry")
        where = f"param_groups[{len(self.param_groups)}]"
        params = param_group["params"]
        params = [params] if isinstance(params, Parameter) else list(params)
        seen = {id(p) for group in self.param_groups for p in group["params"]}
        for i, p in enumerate(params):
            if not isinstance(p, Parameter):
                raise TypeError(f"{where}['params'][{i}] must be a fastfc.Parameter, "
                                f"got {type(p).__name__}")
            if id(p) in seen:
                raise ValueError(f"{where}['params'][{i}] ({p.name!r}) appears in more than "
                                 "one place; each Parameter may be given once")
            seen.add(id(p))
        overrides = {k: v for k, v in param_group.items() if k not in ("params", "name")}
        group = dict(self.defaults)
        group.update(self._checked(overrides, where))
        self._check_combination(group)
        if "name" in param_group:
            group["name"] = str(param_group["name"])
        group["params"] = params
        self._check_params_apart(self.param_groups + [group])
        self.param_groups.append(group)
        self._checked_groups.append(self._snapshot(group))

    @staticmethod
    def _check_params_apart(groups):
        """_check_apart over the parameters of every group."""
        places = [(g, i) for g, group in enumerate(groups) for i in range(len(group["params"]))]
        _check_apart([groups[g]["params"][i] for g, i in places],
                     lambda k: f"param_groups[{places[k][0]}]['params'][{places[k][1]}]")

    def _snapshot(self, group):
        """What the step-time check compares: the hyperparameters of group and
        the ids of its parameters (about a microsecond); the parameters
        themselves come last, kept so that no id is reused meanwhile."""
        params = list(group.get("params", ()))
        return tuple(map(group.get, self._HYPERPARAMETERS)), list(map(id, params)), params

    def _check_changed_groups(self):
        """Re-checks, before a step, every group whose hyperparameters or
        parameters changed since they were last checked (param_groups is
        the documented way to schedule a learning rate), storing the checked
        values back; ValueError/TypeError naming the group and key. A
        schedule that changes only hyperparameters (a learning rate every
        step) re-checks only those of the groups it changed; a change of
        any group's parameters re-checks everything."""
        groups = self.param_groups
        if len(groups) == len(self._checked_groups):
            changed = []
            for g, (group, (hyper, ids, _)) in enumerate(zip(groups, self._checked_groups)):
                if not isinstance(group, dict) or list(map(id, group.get("params", ()))) != ids:
                    break
                if tuple(map(group.get, self._HYPERPARAMETERS)) != hyper:
                    changed.append(g)
            else:
                for g in changed:
                    self._check_group_hyperparameters(g, groups[g])
                    self._checked_groups[g] = self._snapshot(groups[g])
                return
        for g, group in enumerate(groups):
            where = f"param_groups[{g}]"
            if not isinstance(group, dict):
                raise TypeError(f"{where} must be a dict, got {type(group).__name__}")
            self._check_group_hyperparameters(g, group)
            params = group.get("params")
            if not isinstance(params, list) or not all(isinstance(p, Parameter) for p in params):
                raise TypeError(f"{where}['params'] must be a list of fastfc.Parameter")
        all_params = [p for group in groups for p in group["params"]]
        if len({id(p) for p in all_params}) != len(all_params):
            raise ValueError("a Parameter appears in more than one place in param_groups; "
                             "each Parameter may be given once")
        self._check_params_apart(groups)
        self._checked_groups = [self._snapshot(group) for group in groups]

    def _check_group_hyperparameters(self, g, group):
        """Checks and normalizes, in place, the hyperparameters of group g."""
        where = f"param_groups[{g}]"
        for key, check in self._HYPERPARAMETERS.items():
            if key not in group:
                raise ValueError(f"{where} has no {key!r} entry")
            group[key] = check(f"{where}[{key!r}]", group[key])
        self._check_combination(group)

    def zero_grad(self):
        """Sets every gradient to zero, in place (the arrays are kept)."""
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p.grad.fill(0)

    # ---- the update ----------------------------------------------------------

    def _state_slots(self, group):
        """The names of the (up to 3) state arrays the kernel reads, None for unused slots."""
        raise NotImplementedError

    def _new_state_array(self, key, p, group):
        # np.zeros, not zeros_like: calloc's pages are zero until first written
        # (by the kernel, in its pieces), where zeros_like writes every byte
        # while holding the GIL (0.2 s for 16M floats).
        return np.zeros(p.data.shape, dtype=p.data.dtype)

    def _step_number(self, state, added):
        """The count of updates of this parameter including the coming one.
        The stored count is checked as a loaded one is (an int in [0, 2**53],
        see _loaded_step) when it is not a plain int in range, so a count set
        by hand cannot make the bias corrections NaN or overflow the kernel's
        int64; the common case costs one type check and one comparison."""
        step = state.get("step", 0)
        if type(step) is not int or not 0 <= step < _MAX_STEP:
            step = _loaded_step(step, "the optimizer's state['step']")
            if step >= _MAX_STEP:
                raise ValueError(f"the optimizer's state['step'] = {step} is at the limit 2**53")
        return step + 1

    def _update(self, group, datas, grads, states, steps, owners):
        raise NotImplementedError

    def step(self, closure=None):
        """Updates every Parameter that has a gradient (p.grad not None) in
        place, one C call per param group. closure, if given, is called first
        (re-evaluating the loss) and its result returned, as in torch."""
        loss = None if closure is None else closure()
        self._check_changed_groups()
        work = []  # per group with gradients: (group, its _update arguments, pending)
        for group in self.param_groups:
            slots = self._state_slots(group)
            owners, datas, grads, states, steps, pending = [], [], [], [], [], []
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state.get(p)
                if state is None:
                    state = {}
                # State arrays first allocated now are committed only after the
                # kernel ran (it checks every array first), so a bad gradient
                # leaves the optimizer exactly as it was.
                added = {}
                arrays = []
                for key in slots:
                    if key is None:
                        arrays.append(None)
                        continue
                    arr = state.get(key)
                    if arr is None:
                        arr = added[key] = self._new_state_array(key, p, group)
                    arrays.append(arr)
                step = self._step_number(state, added)
                owners.append(p)
                datas.append(p.data)
                grads.append(p.grad)
                states.append(arrays)
                steps.append(step)
                pending.append((p, state, added, step))
            if datas:
                work.append((group, (datas, grads, states, steps, owners), pending))
        if len(work) > 1:
            # one call per group: every group's arrays checked before the first
            # runs, so that a bad array in a later group leaves the earlier ones
            # untouched too
            work = [(group, (_optim.tensors(*args),) + (None,) * 4, pending)
                    for group, args, pending in work]
        interrupted = None  # a Ctrl-C seen inside a kernel: raised once the step is whole
        for group, args, pending in work:
            raised = self._update(group, *args)
            interrupted = raised if interrupted is None else interrupted
            for p, state, added, step in pending:
                if added:
                    state.update(added)
                if self._counts_steps:
                    state["step"] = step
                self.state[p] = state
        _raise_pending(interrupted)
        return loss

    # ---- saving and loading ----------------------------------------------------

    def state_dict(self):
        """The optimizer's state as plain data, laid out as torch's:
        {"state": {index: {"step": int, <name>: array copy, ...}},
         "param_groups": [{<hyperparameters>, "params": [index, ...]}, ...]},
        parameters numbered in param-group order. flatten_state_dict(sd)
        gives the same as a flat dict of arrays for np.savez."""
        index = {}
        groups = []
        for group in self.param_groups:
            packed = {k: v for k, v in group.items() if k != "params"}
            packed["params"] = [index.setdefault(id(p), len(index)) for p in group["params"]]
            groups.append(packed)
        state = {}
        for group in self.param_groups:
            for p in group["params"]:
                if p in self.state:
                    state[index[id(p)]] = {k: (v.copy() if isinstance(v, np.ndarray) else v)
                                           for k, v in self.state[p].items()}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict):
        """Restores what state_dict() (or flatten_state_dict of it, e.g. an
        np.load of a saved .npz) holds: hyperparameters and state. The groups
        must hold as many parameters, of the same shapes, as this optimizer's.
        Existing state arrays are overwritten in place. Nothing changes if
        anything does not match."""
        if not isinstance(state_dict, Mapping):
            raise TypeError("state_dict must be a dict from state_dict() (or a mapping of "
                            "arrays from flatten_state_dict, such as np.load of a saved one), "
                            f"got {type(state_dict).__name__}")
        if "param_groups" not in state_dict:
            state_dict = unflatten_state_dict(state_dict)
        for key, kind in (("param_groups", (list, tuple)), ("state", Mapping)):
            if key not in state_dict:
                raise ValueError(f"state_dict has no {key!r} entry")
            if not isinstance(state_dict[key], kind):
                raise TypeError(f"state_dict[{key!r}] must be a "
                                f"{'list' if key == 'param_groups' else 'dict'}, "
                                f"got {type(state_dict[key]).__name__}")
        saved_groups = state_dict["param_groups"]
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(f"state_dict has {len(saved_groups)} param groups, "
                             f"this optimizer {len(self.param_groups)}")
        params_by_index = {}
        new_groups = []
        for g, (saved, group) in enumerate(zip(saved_groups, self.param_groups)):
            where = f"state_dict's param_groups[{g}]"
            if not isinstance(saved, Mapping) or "params" not in saved:
                raise TypeError(f"{where} must be a dict with a 'params' entry")
            indices = [_loaded_index(i, f"{where}['params']") for i in saved["params"]]
            if len(indices) != len(group["params"]):
                raise ValueError(f"{where} has {len(indices)} "
                                 f"parameters, this optimizer's {len(group['params'])}")
            for i, p in zip(indices, group["params"]):
                if params_by_index.setdefault(i, p) is not p:
                    raise ValueError(f"{where}['params'] repeats parameter index {i}")
            hyper = {k: v for k, v in saved.items() if k not in ("params", "name")}
            new_group = dict(group)
            new_group.update(self._checked(hyper, where))
            self._check_combination(new_group)
            if "name" in saved:
                new_group["name"] = str(saved["name"])
            new_groups.append(new_group)
        new_state = {}
        for index, saved in state_dict["state"].items():
            where = f"state_dict's state[{index!r}]"
            p = params_by_index.get(_loaded_index(index, "state_dict's state keys"))
            if p is None:
                raise ValueError(f"state_dict has state for parameter {index}, "
                                 "which is in none of its param groups")
            if not isinstance(saved, Mapping):
                raise TypeError(f"{where} must be a dict, got {type(saved).__name__}")
            new_state[p] = self._loaded_state(p, saved, where)
        for p, loaded in new_state.items():
            old = self.state.get(p, {})
            for key, value in loaded.items():
                if isinstance(value, np.ndarray) and isinstance(old.get(key), np.ndarray):
                    np.copyto(old[key], value)
                    loaded[key] = old[key]
        self.state = new_state
        for group, new_group in zip(self.param_groups, new_groups):
            group.clear()
            group.update(new_group)

    def _loaded_state(self, p, saved, where):
        """The state of p from saved, checked: the step count (see
        _loaded_step), and only this rule's state arrays, each of p's shape,
        finite, and >= 0 where the rule keeps squares."""
        state = {}
        for key, value in saved.items():
            if key == "step" and self._counts_steps:
                state[key] = _loaded_step(value, f"{where}['step']")
                continue
            if key not in self._STATE:
                known = ", ".join((["step"] if self._counts_steps else []) + list(self._STATE))
                raise ValueError(f"{where} has {key!r}, which is no state of "
                                 f"{type(self).__name__} (it keeps {known})")
            arr = check_unmasked(f"{where}[{key!r}]", value)
            if arr.shape != p.data.shape:
                raise ValueError(f"{where}[{key!r}] has shape {arr.shape}, but its parameter "
                                 f"{p.name!r} has shape {p.data.shape}")
            if arr.dtype.kind not in "fiu":
                raise TypeError(f"{where}[{key!r}] must hold numbers, got dtype {arr.dtype}")
            arr = np.array(arr, dtype=p.data.dtype, order="C")
            if not np.isfinite(arr).all():
                raise ValueError(f"{where}[{key!r}] holds NaN or infinite values "
                                 f"(or values too large for {p.data.dtype})")
            if self._STATE[key] and (arr < 0).any():
                raise ValueError(f"{where}[{key!r}] holds negative values; it is a sum of "
                                 "squares")
            state[key] = arr
        return state


def _loaded_index(value, where):
    """A saved parameter index as an int."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{where} must hold parameter indices (ints), got {value!r}")
    return int(value)


def flatten_state_dict(state_dict):
    """An optimizer state_dict as a flat dict of arrays that np.savez stores
    without pickling: keys "param_groups.<g>.<hyperparameter>" and
    "state.<index>.<name>". unflatten_state_dict (or load_state_dict
    directly) reverses it."""
    flat = {}
    for g, group in enumerate(state_dict["param_groups"]):
        for key, value in group.items():
            if key == "params":
                value = np.asarray(value, dtype=np.int64)
            flat[f"param_groups.{g}.{key}"] = np.asarray(value)
    for index, state in state_dict["state"].items():
        for key, value in state.items():
            flat[f"state.{int(index)}.{key}"] = np.asarray(value)
    return flat


def _group_value(key, value):
    if key == "params":
        return [int(i) for i in value]
    if value.ndim == 1:  # betas
        return tuple(float(v) for v in value)
    if value.dtype.kind == "b":
        return bool(value)
    if value.dtype.kind in "iu":
        return int(value)
    if value.dtype.kind == "U":
        return str(value)
    return float(value)


def unflatten_state_dict(flat):
    """The state_dict that flatten_state_dict(state_dict) flattened."""
    groups, state = {}, {}
    for name in flat.keys():
        parts = str(name).split(".", 2)
        if len(parts) != 3 or parts[0] not in ("param_groups", "state") or not parts[1].isdigit():
            raise ValueError(f"{name!r} is not a key of a flattened optimizer state_dict")
        section, index, key = parts[0], int(parts[1]), parts[2]
        value = np.asarray(flat[name])
        if section == "param_groups":
            groups.setdefault(index, {})[key] = _group_value(key, value)
        else:
            state.setdefault(index, {})[key] = np.array(value)  # checked when loaded
    if sorted(groups) != list(range(len(groups))):
        raise ValueError(f"flattened state_dict has param groups {sorted(groups)}; "
                         "expected 0, 1, ...")
    return {"state": state, "param_groups": [groups[g] for g in range(len(groups))]}


# ---- the optimizers -------------------------------------------------------------

class SGD(Optimizer):
    """Stochastic gradient descent with momentum, as torch.optim.SGD (same
    arguments, defaults and formula):

        g = grad (-grad if maximize) + weight_decay * p
        if momentum != 0:
            b = g at the first step, else b = momentum * b + (1 - dampening) * g
            g = g + momentum * b if nesterov else b
        p = p - lr * g

    Inputs: params (Parameters or param groups), lr=1e-3, momentum=0,
    dampening=0, weight_decay=0, nesterov=False (needs momentum > 0 and
    dampening == 0), maximize=False. State: "momentum_buffer" (with momentum).
    """

    _HYPERPARAMETERS = {"lr": _nonnegative, "momentum": _nonnegative, "dampening": _number,
                        "weight_decay": _nonnegative, "nesterov": _flag, "maximize": _flag}
    _STATE = {"momentum_buffer": False}
    _counts_steps = False

    def __init__(self, params, lr=1e-3, momentum=0, dampening=0, weight_decay=0,
                 nesterov=False, maximize=False):
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      weight_decay=weight_decay, nesterov=nesterov,
                                      maximize=maximize))

    def _check_combination(self, group):
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError("nesterov=True needs momentum > 0 and dampening == 0, got "
                             f"momentum={group['momentum']}, dampening={group['dampening']}")

    def _state_slots(self, group):
        return ("momentum_buffer" if group["momentum"] != 0 else None, None, None)

    def _step_number(self, state, added):
        return 1 if added else 2  # a new momentum buffer starts as the gradient

    def _update(self, group, datas, grads, states, steps, owners):
        return _optim.sgd_step(datas, grads, states, steps, owners, group["lr"], group["momentum"],
                        group["dampening"], group["weight_decay"], group["nesterov"],
                        group["maximize"])


class Adagrad(Optimizer):
    """Adagrad, as torch.optim.Adagrad (same arguments, defaults and formula):

        g = grad (-grad if maximize) + weight_decay * p
        clr = lr / (1 + (step - 1) * lr_decay)
        sum = sum + g * g          (sum starts at initial_accumulator_value)
        p = p - clr * g / (sqrt(sum) + eps)

    Inputs: params, lr=1e-2, lr_decay=0, weight_decay=0,
    initial_accumulator_value=0, eps=1e-10, maximize=False.
    State: "step", "sum".
    """

    _HYPERPARAMETERS = {"lr": _nonnegative, "lr_decay": _nonnegative,
                        "weight_decay": _nonnegative, "initial_accumulator_value": _nonnegative,
                        "eps": _nonnegative, "maximize": _flag}
    _STATE = {"sum": True}

    def __init__(self, params, lr=1e-2, lr_decay=0, weight_decay=0,
                 initial_accumulator_value=0, eps=1e-10, maximize=False):
        super().__init__(params, dict(lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
                                      initial_accumulator_value=initial_accumulator_value,
                                      eps=eps, maximize=maximize))

    def _state_slots(self, group):
        return ("sum", None, None)

    def _new_state_array(self, key, p, group):
        return np.full_like(p.data, group["initial_accumulator_value"])

    def _update(self, group, datas, grads, states, steps, owners):
        return _optim.adagrad_step(datas, grads, states, steps, owners, group["lr"],
                            group["lr_decay"], group["weight_decay"], group["eps"],
                            group["maximize"])


class RMSprop(Optimizer):
    """RMSprop, as torch.optim.RMSprop (same arguments, defaults and formula):

        g = grad (-grad if maximize) + weight_decay * p
        v = alpha * v + (1 - alpha) * g * g
        if centered: g_avg = alpha * g_avg + (1 - alpha) * g; v~ = v - g_avg^2, else v~ = v
        if momentum > 0: b = momentum * b + g / (sqrt(v~) + eps); p = p - lr * b
        else:            p = p - lr * g / (sqrt(v~) + eps)

    Inputs: params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0,
    momentum=0, centered=False, maximize=False.
    State: "step", "square_avg", "momentum_buffer" (momentum), "grad_avg" (centered).
    """

    _HYPERPARAMETERS = {"lr": _nonnegative, "alpha": _nonnegative, "eps": _nonnegative,
                        "weight_decay": _nonnegative, "momentum": _nonnegative,
                        "centered": _flag, "maximize": _flag}
    _STATE = {"square_avg": True, "momentum_buffer": False, "grad_avg": False}

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0, momentum=0,
                 centered=False, maximize=False):
        super().__init__(params, dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay,
                                      momentum=momentum, centered=centered, maximize=maximize))

    def _state_slots(self, group):
        return ("square_avg", "momentum_buffer" if group["momentum"] > 0 else None,
                "grad_avg" if group["centered"] else None)

    def _update(self, group, datas, grads, states, steps, owners):
        return _optim.rmsprop_step(datas, grads, states, steps, owners, group["lr"], group["alpha"],
                            group["eps"], group["weight_decay"], group["momentum"],
                            group["maximize"])


class Adam(Optimizer):
    """Adam, as torch.optim.Adam (same arguments, defaults and formula;
    weight_decay is the coupled L2 term added to the gradient):

        g = grad (-grad if maximize) + weight_decay * p
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        if amsgrad: v_max = max(v_max, v), used as v below
        p = p - (lr / (1 - beta1^step)) * m / (sqrt(v) / sqrt(1 - beta2^step) + eps)

    (bias corrections in double precision from the step count).
    Inputs: params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0,
    amsgrad=False, maximize=False.
    State: "step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq" (amsgrad).
    """

    _HYPERPARAMETERS = {"lr": _nonnegative, "betas": _betas, "eps": _nonnegative,
                        "weight_decay": _nonnegative, "amsgrad": _flag, "maximize": _flag}
    _STATE = {"exp_avg": False, "exp_avg_sq": True, "max_exp_avg_sq": True}
    _decoupled = False

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0,
                 amsgrad=False, maximize=False):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                                      amsgrad=amsgrad, maximize=maximize))

    def _state_slots(self, group):
        return ("exp_avg", "exp_avg_sq", "max_exp_avg_sq" if group["amsgrad"] else None)

    def _update(self, group, datas, grads, states, steps, owners):
        beta1, beta2 = group["betas"]
        return _optim.adam_step(datas, grads, states, steps, owners, group["lr"], beta1, beta2,
                                self._kernel_eps(group), group["weight_decay"], self._decoupled,
                                group["maximize"])

    def _kernel_eps(self, group):
        """The eps the kernel adds to sqrt(v_hat) (a variant may rescale it)."""
        return group["eps"]


class AdamW(Adam):
    """AdamW, as torch.optim.AdamW: Adam with decoupled weight decay, the
    parameter first scaled by 1 - lr * weight_decay, then Adam's update
    without any L2 term in the gradient.

    Inputs: params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2,
    amsgrad=False, maximize=False. State as Adam's.
    """

    _decoupled = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2,
                 amsgrad=False, maximize=False):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                         amsgrad=amsgrad, maximize=maximize)


OPTIMIZERS = {"sgd": SGD, "adagrad": Adagrad, "rmsprop": RMSprop, "adam": Adam, "adamw": AdamW}

# The update rules by name (fastfc.Solver's update_rule, the command line's
# --optimizer): name -> (optimizer class, default hyperparameters). The
# course names keep the course's default learning rates. sgd_momentum is
# torch's SGD with momentum 0.9: at a constant learning rate it takes the
# course rule's steps (v = -lr * torch's buffer).
UPDATE_RULES = {
    "sgd": (SGD, {"lr": 1e-2}),
    "sgd_momentum": (SGD, {"lr": 1e-2, "momentum": 0.9}),
    "rmsprop": (RMSprop, {}),
    "adam": (Adam, {}),
    "adamw": (AdamW, {}),
    "adagrad": (Adagrad, {}),
}
# The rules whose optimizer takes a momentum.
MOMENTUM_RULES = tuple(name for name, (cls, _) in UPDATE_RULES.items() if cls in (SGD, RMSprop))


# ---- course-style update rules ---------------------------------------------------

_step_count = functools.partial(check_int, low=0, high=_MAX_STEP - 1)


# The course's rules: name -> (hyperparameters: key -> (default, check), the
# state arrays shaped like w). Defaults are the course notes'.
COURSE_RULES = {
    "sgd": ({"learning_rate": (1e-2, _nonnegative)}, ()),
    "sgd_momentum": ({"learning_rate": (1e-2, _nonnegative), "momentum": (0.9, _nonnegative)},
                     ("velocity",)),
    "rmsprop": ({"learning_rate": (1e-2, _nonnegative), "decay_rate": (0.99, _beta),
                 "epsilon": (1e-8, _nonnegative)}, ("cache",)),
    "adam": ({"learning_rate": (1e-3, _nonnegative), "beta1": (0.9, _beta),
              "beta2": (0.999, _beta), "epsilon": (1e-8, _nonnegative), "t": (0, _step_count)},
             ("m", "v")),
}


# The half-open bounds [low, high) of the values each check accepts as they are.
_ACCEPTS = {_nonnegative: (0.0, float("inf")), _beta: (0.0, 1.0), _step_count: (0, _MAX_STEP)}


def _course_config(config, w, hyper, state_keys, owner):
    """config (a dict) checked and filled in place with the rule's defaults
    and its state arrays (zeros, or the given ones as C-contiguous arrays of
    w's dtype)."""
    if not isinstance(config, dict):
        raise TypeError(f"{owner}: config must be a dict or None, got {type(config).__name__}")
    for key in config:
        if key not in hyper and key not in state_keys:
            raise ValueError(f"{owner}: unknown config key {key!r} (this rule takes "
                             f"{', '.join(list(hyper) + list(state_keys))})")
    for key, (default, check) in hyper.items():
        value = config.get(key, default)
        low, high = _ACCEPTS[check]
        # A value of the default's type within bounds is what check would
        # return: the common case (checked at an earlier step), kept cheap.
        if not (type(value) is type(default) and low <= value < high):
            value = check(key, value)
        config[key] = value
    for key in state_keys:
        arr = config.get(key)
        if arr is None:
            arr = np.zeros_like(w)
        elif isinstance(arr, np.ndarray):
            arr = check_unmasked(f"{owner}: config[{key!r}]", arr)
        if not isinstance(arr, np.ndarray) or arr.shape != w.shape:
            raise ValueError(f"{owner}: config[{key!r}] must be an array of w's shape {w.shape}, "
                             f"got {getattr(arr, 'shape', type(arr).__name__)}")
        elif not (arr.dtype == w.dtype and arr.flags.c_contiguous and arr.flags.writeable):
            arr = np.array(arr, dtype=w.dtype, order="C")
        config[key] = arr


def _course_kernel(rule, ws, dws, configs, owners):
    """One C call of rule over the parameters ws, whose configs hold the
    same hyperparameters; returns what the _optim function returns."""
    c = configs[0]
    n = len(ws)
    if rule == "sgd":
        return _optim.sgd_step(ws, dws, [None] * n, [1] * n, owners, c["learning_rate"], 0.0,
                               0.0, 0.0, False, False)
    if rule == "sgd_momentum":
        return _optim.sgd_velocity_step(ws, dws, [(k["velocity"], None, None) for k in configs],
                                        [1] * n, owners, c["learning_rate"], c["momentum"])
    if rule == "rmsprop":
        return _optim.rmsprop_step(ws, dws, [(k["cache"], None, None) for k in configs], [1] * n,
                                   owners, c["learning_rate"], c["decay_rate"], c["epsilon"],
                                   0.0, 0.0, False)
    return _optim.adam_step(ws, dws, [(k["m"], k["v"], None) for k in configs],
                            [k["t"] + 1 for k in configs], owners, c["learning_rate"], c["beta1"],
                            c["beta2"], c["epsilon"], 0.0, False, False)


def course_step(rule, ws, dws, configs, owners=None):
    """The course rule named rule ("sgd", "sgd_momentum", "rmsprop" or
    "adam") applied in place to every parameter of ws, in as few C calls as
    possible: one per distinct set of hyperparameters (usually one).

    Inputs:
    - ws: list of parameter arrays (C-contiguous, writeable, float32/float64),
      updated in place
    - dws: list of their gradients, same shapes and dtypes
    - configs: list of one config dict per parameter, as the single rules
      take them (sgd, sgd_momentum, ...): each is checked, filled with the
      defaults and state arrays, and updated (adam's t) as they do
    - owners: what to name in error messages, per parameter (None: "w[k]")
    """
    if rule not in COURSE_RULES:
        raise ValueError(f"rule must be one of {', '.join(COURSE_RULES)}, got {rule!r}")
    hyper, state_keys = COURSE_RULES[rule]
    if owners is None:
        owners = [f"w[{k}]" for k in range(len(ws))]
    groups = {}
    for k, (w, config) in enumerate(zip(ws, configs)):
        _course_config(config, w, hyper, state_keys, owners[k])
        groups.setdefault(tuple(config[key] for key in hyper if key != "t"), []).append(k)
    pending = None
    for members in groups.values():
        raised = _course_kernel(rule, [ws[k] for k in members], [dws[k] for k in members],
                                [configs[k] for k in members], [owners[k] for k in members])
        pending = raised if pending is None else pending
    if rule == "adam":
        for config in configs:
            config["t"] += 1
    _raise_pending(pending)


def _course_rule(rule, w, dw, config):
    """(next_w, config) of one course rule: w checked and updated in place
    when it is a C-contiguous writeable float array (else a copy is)."""
    if not isinstance(w, np.ndarray) or w.dtype not in (np.float32, np.float64):
        raise TypeError(f"w must be a float32 or float64 NumPy array, got "
                        f"{getattr(w, 'dtype', type(w).__name__)}")
    w = check_unmasked("w", w)
    if isinstance(dw, np.ndarray):
        dw = check_unmasked("dw", dw)
    if not isinstance(dw, np.ndarray) or dw.dtype != w.dtype:
        raise TypeError(f"dw must be a NumPy array of w's dtype {w.dtype}, got "
                        f"{getattr(dw, 'dtype', type(dw).__name__)}")
    if dw.shape != w.shape:
        raise ValueError(f"dw has shape {dw.shape} but w has shape {w.shape}")
    # In place when possible: the course's next_w may be w itself.
    if not (w.flags.c_contiguous and w.flags.writeable and w.dtype.isnative):
        w = np.array(w, order="C")
    if config is None:
        config = {}
    course_step(rule, [w], [np.ascontiguousarray(dw)], [config], ["w"])
    return w, config


def _raise_pending(interrupt):
    """Raise what a kernel call returned (a KeyboardInterrupt seen between the
    pieces of an update that has run in full), if anything."""
    if interrupt is not None:
        raise interrupt


def sgd(w, dw, config=None):
    """Vanilla stochastic gradient descent: w = w - learning_rate * dw.

    Inputs: w, dw: arrays of the same shape and float dtype; config: dict with
    learning_rate (default 1e-2), or None.
    Returns (next_w, config); next_w is w updated in place when w is C-contiguous.
    """
    return _course_rule("sgd", w, dw, config)


def sgd_momentum(w, dw, config=None):
    """SGD with momentum, the course notes' form:
        v = momentum * v - learning_rate * dw;  w = w + v.

    config: learning_rate (1e-2), momentum (0.9), velocity (zeros like w).
    Returns (next_w, config).
    """
    return _course_rule("sgd_momentum", w, dw, config)


def rmsprop(w, dw, config=None):
    """RMSProp, the course notes' form (torch's RMSprop with alpha = decay_rate):
        cache = decay_rate * cache + (1 - decay_rate) * dw**2
        w = w - learning_rate * dw / (sqrt(cache) + epsilon)

    config: learning_rate (1e-2), decay_rate (0.99), epsilon (1e-8), cache (zeros).
    Returns (next_w, config).
    """
    return _course_rule("rmsprop", w, dw, config)


def adam(w, dw, config=None):
    """Adam, the course notes' form (the same update as torch's Adam):
        t = t + 1
        m = beta1 * m + (1 - beta1) * dw;  v = beta2 * v + (1 - beta2) * dw**2
        w = w - learning_rate * (m / (1 - beta1**t)) / (sqrt(v / (1 - beta2**t)) + epsilon)

    config: learning_rate (1e-3), beta1 (0.9), beta2 (0.999), epsilon (1e-8),
    m and v (zeros like w), t (0, the steps taken so far).
    Returns (next_w, config).
    """
    return _course_rule("adam", w, dw, config)
