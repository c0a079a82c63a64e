"""The arguments of a compiled function: its cache key, and where each input of a closed form sits.

A signature is what a closed form may be reused for: the shapes and dtypes
of the arrays among the arguments (inside lists, tuples and dicts too) and
the values of everything else. A place is a path of indices and keys into
the arguments; the trace runs on private copies, so every array and Tensor
has one place, and a later call's arguments are read there.
"""

from __future__ import annotations

import math
from operator import itemgetter
from typing import Any, Callable, Container, Sequence

import numpy as np

from .errors import ShapeError, TraceError
from .ops import index_masks
from .tensor import Tensor


# -- signatures: what a closed form may be reused for -------------------------------------

def _container(a: Any) -> bool:
    """Lists, tuples (named ones too) and dicts: looked into, copied, bound by place."""
    t = type(a)
    return t is list or t is tuple or t is dict or (isinstance(a, tuple) and hasattr(a, "_fields"))


def signature(a: Any) -> Any:
    """The part of the cache key one argument gives: its arrays' shapes and dtypes, else itself."""
    if type(a) is np.ndarray:
        return a.shape, a.dtype
    if isinstance(a, Tensor):
        return Tensor, a.value.shape, a.value.dtype
    if isinstance(a, np.ndarray):
        return type(a), a.shape, a.dtype
    if _container(a):
        items = a.items() if type(a) is dict else enumerate(a)
        return type(a), tuple((k, signature(v)) for k, v in items)
    try:
        hash(a)
    except TypeError:
        return _Identity(a)  # read where it is at every call, like anything else f reads
    if isinstance(a, (float, np.floating)) and not a:  # -0.0 == 0.0, but 1 / -0.0 is -inf
        return type(a), a, bool(np.signbit(a))
    if isinstance(a, (float, np.floating)) and a != a:  # NaN equals no NaN: one key for all
        return type(a), "nan"
    return type(a), a


def value_key(a: Any) -> tuple:
    """An array's (or Tensor's) value, for an array the closed form holds as a constant."""
    a = np.asarray(a.value if isinstance(a, Tensor) else a)
    return a.shape, a.dtype.str, a.tobytes()


class _Identity:
    """A key part for an object that cannot be hashed: the object itself, by identity."""

    __slots__ = ("obj",)

    def __init__(self, obj: Any) -> None:
        self.obj = obj

    def __hash__(self) -> int:
        return id(self.obj)

    def __eq__(self, other: Any) -> bool:
        return type(other) is _Identity and other.obj is self.obj


# -- places: where in the arguments each input of the closed form sits -----------------------

def private(a: Any, memo: dict[int, Tensor] | None = None) -> Any:
    """A copy of an argument's arrays and Tensors (in containers too) for the trace alone.

    A Tensor passed more than once gets one copy (``memo``, by id), so the
    trace sees one variable there, as the eager tape does.
    """
    if isinstance(a, Tensor):
        if memo is None:
            return Tensor(a.value.copy(), name=a.name)
        copy = memo.get(id(a))
        if copy is None:
            copy = memo[id(a)] = Tensor(a.value.copy(), name=a.name)
        return copy
    if isinstance(a, np.ndarray):
        return a.copy()
    if not _container(a):
        return a
    if type(a) is dict:
        return {k: private(v, memo) for k, v in a.items()}
    items = [private(v, memo) for v in a]
    return type(a)(*items) if hasattr(a, "_fields") else type(a)(items)


# -- Tensors passed more than once: one variable, as eager sees them --------------------------

_SCALARS = frozenset((np.ndarray, int, float, bool, str, type(None)))


def other_signature(a: Any, holders: list) -> Any:
    """``signature(a)`` for an argument that is neither an array nor a Tensor; one that may
    hold Tensors (a list, an object) is noted in ``holders``."""
    if type(a) not in _SCALARS:
        holders.append(a)
    return signature(a)


def with_repeats(key: tuple, args: tuple, holders: list) -> tuple:
    """``key``, and the places of any Tensor passed twice (one variable, as eager sees it).

    Only a call that passes some object twice, or passes something that may
    hold Tensors, is walked: a training loop's call of distinct Tensors and
    arrays costs one set of ids.
    """
    if holders or len(set(map(id, args))) < len(args):
        found = repeats(args)
        if found:
            return key + (found,)
    return key


def repeats(args: tuple) -> tuple:
    """The places of each Tensor passed more than once, in groups: part of the cache key,
    since a call that passes its Tensors otherwise needs a closed form of its own."""
    first: dict[int, tuple] = {}
    groups: dict[tuple, list[tuple]] = {}
    for place, a in _walk(args):
        if isinstance(a, Tensor):
            at_first = first.setdefault(id(a), place)
            if at_first != place:
                groups.setdefault(at_first, [at_first]).append(place)
    return tuple(tuple(g) for g in groups.values())


def _walk(items: Any, path: tuple = ()):
    """(place, array or Tensor) for each in the arguments; a place is a path of indices and keys."""
    for k, a in (items.items() if type(items) is dict else enumerate(items)):
        if isinstance(a, (np.ndarray, Tensor)):
            yield path + (k,), a
        elif _container(a):
            yield from _walk(a, path + (k,))


def at(args: Any, place: tuple) -> Any:
    for k in place:
        args = args[k]
    return args


def _places(traced: list, skip: Any = ()) -> dict[int, tuple]:
    """id of each traced array, Tensor and Tensor's value -> its place (outside ``skip``)."""
    places = {}
    for place, a in _walk(traced):
        if place[0] not in skip:
            places[id(a)] = place
            if isinstance(a, Tensor):
                places[id(a.value)] = place
    return places


def getters(cf: Any, traced: list, args: tuple, sources: dict, tape: Any) -> list:
    """How a call's arguments give each input of the closed form, in order: an index (the
    argument as it is), a ``_TensorAt`` index (its value), or a function of the arguments.

    ``tape``: the trace's, whose ``made`` holds the Tensors f made with mt.Tensor(...),
    each read again from what it was made from.
    """
    leaves = cf.leaves
    places = _places(traced)
    found, computed = [], None
    for name in cf.inputs:
        leaf = leaves[name]
        place = places.get(id(leaf))
        if place is None and id(leaf) in tape.made:
            if computed is None:  # what the ops made, and their arrays: once per trace
                computed = {id(x) for node in tape.nodes for x in (node.output, node.output.value)}
            found.append(_made_from(name, leaf, tape.made[id(leaf)][1], places, args, computed))
        elif place is None:
            _refuse_views(leaf, places)
            found.append(_outside(name, leaf))
        else:
            found.append(_getter(place, at(args, place), place[0] in sources))
    return found


def read_from_outside(cf: Any, traced: list, made: Container[int]) -> tuple[Tensor, ...]:
    """The Tensors the closed form reads from outside the arguments: a closure's, a global's
    (not those f made itself, in ``made`` by id: no call can pass one)."""
    places = _places(traced)
    return tuple(leaf for leaf in cf.leaves.values()
                 if isinstance(leaf, Tensor) and id(leaf) not in places and id(leaf) not in made)


def _made_from(name: str, leaf: Tensor, data: Any, places: dict[int, tuple], args: tuple,
               computed: Container[int]) -> int | Callable:
    """How to read the input ``leaf``, which f made while traced as ``mt.Tensor(data)``: from
    the argument ``data`` is (or the Tensor it came from), converted as that made it; from
    ``data`` itself where it came from outside. A view of an argument, a Tensor f computed
    and a list holding either are refused: no later call could give them."""
    place = places.get(id(data))
    if place is not None:
        arg = at(args, place)
        if len(place) == 1 and type(arg) is np.ndarray and arg.dtype.kind == "f":
            return place[0]
        if len(place) == 1 and type(arg) is Tensor:
            return _TensorAt(place[0])
        return lambda args: Tensor(at(args, place)).value
    _refuse_computed(data, places, computed)
    read = _reader(data, places)
    if read is not None:  # a list of arguments' arrays
        return lambda args: Tensor(read(args)).value
    if isinstance(data, Tensor) or (isinstance(data, np.ndarray) and data.dtype.kind != "f"):
        return _outside(name, leaf, lambda: Tensor(data).value)
    return _outside(name, leaf)  # a float array: the leaf holds it; a number is a constant


def _reader(data: Any, places: dict[int, tuple]) -> Callable | None:
    """A function of a call's arguments giving ``data`` with each argument in it read
    from that call; None where ``data`` holds none."""
    place = places.get(id(data))
    if place is not None:
        return lambda args: at(args, place)
    if type(data) is not list and type(data) is not tuple:
        return None
    readers = [_reader(x, places) for x in data]
    if all(r is None for r in readers):
        return None
    readers = [r or (lambda args, x=x: x) for r, x in zip(readers, data)]
    return lambda args: [r(args) for r in readers]


def _refuse_computed(data: Any, places: dict[int, tuple], computed: Container[int]) -> None:
    """Refuse ``mt.Tensor(data)`` while tracing where ``data`` is, or holds, a view of an
    argument or a Tensor f computed (or its value): the closed form would keep its first value."""
    if _container(data):
        for item in (data.values() if type(data) is dict else data):
            _refuse_computed(item, places, computed)
        return
    if isinstance(data, (np.ndarray, Tensor)):
        _refuse_views(data, places, "mt.Tensor(...) of ")
    array = data.value if isinstance(data, Tensor) else data
    shape = np.shape(array)
    while array is not None:
        if id(array) in computed or id(data) in computed:
            raise TraceError(
                f"value_and_grad(..., compile=True): the function made mt.Tensor(t) of a Tensor "
                f"it computed (or of its value), of shape {shape}, so the closed form would keep "
                f"the first call's value; use mt.stop_gradient(t) (or t.detach()), which is "
                f"recorded and computed again at every call, or compile=False")
        array = getattr(array, "base", None)


def binder(getters: list) -> Callable:
    """A function from a call's arguments to the closed form's inputs, in order."""
    if all(type(g) is int for g in getters):  # arrays passed as they are used: no per-call work
        if len(getters) == 1:
            i = getters[0]
            return lambda args: (args[i],)
        return itemgetter(*getters) if getters else (lambda args: ())
    if all(isinstance(g, int) for g in getters):  # some are Tensors: their values are read
        return _picker(getters)
    getters = [itemgetter(g) if type(g) is int else _value_at(g) if type(g) is _TensorAt else g
               for g in getters]
    return lambda args: [g(args) for g in getters]


class _TensorAt(int):
    """The index of an argument that is a Tensor: the input is its value."""


def _value_at(i: int) -> Callable:
    return lambda args: args[i].value


def _picker(getters: list[int]) -> Callable:
    """Arguments by index, Tensors among them read for their values.

    Parameters passed as the Tensors an optimizer holds are a training loop's
    common case: one pick, then a loop over the Tensors alone, keeps binding
    them to a few lookups each.
    """
    if len(getters) == 1:
        i = getters[0]
        return lambda args: (args[i].value,)
    pick = itemgetter(*getters)
    tensors = [k for k, g in enumerate(getters) if type(g) is _TensorAt]

    def bind(args: tuple) -> list:
        picked = list(pick(args))
        for k in tensors:
            picked[k] = picked[k].value
        return picked
    return bind


def _getter(place: tuple, arg: Any, source: bool) -> int | Callable:
    """How to read one input at ``place``: its index when the argument is used as it is."""
    if len(place) == 1 and type(arg) is np.ndarray and (not source or arg.dtype.kind == "f"):
        return place[0]
    if len(place) == 1 and isinstance(arg, Tensor):
        return _TensorAt(place[0])
    if source and not isinstance(arg, Tensor):  # a list, ints: converted as eager's Tensor(...)
        i = place[0]
        return lambda args: Tensor(args[i]).value
    if isinstance(arg, Tensor):
        return lambda args: at(args, place).value
    return lambda args: at(args, place)


def _refuse_views(leaf: Any, places: dict[int, tuple], made: str = "") -> None:
    """Refuse a numpy view of an argument (x.T, x[0]): the code would keep its first value.
    ``made``: what was made of the view, for the message (``mt.Tensor(...) of ``)."""
    base = getattr(leaf.value if isinstance(leaf, Tensor) else leaf, "base", None)
    while base is not None:
        place = places.get(id(base))
        if place is not None:
            where = "".join(f"[{k!r}]" for k in place[1:])
            raise TraceError(
                f"value_and_grad(..., compile=True): the function took {made}a view of argument "
                f"{place[0]}{where} with numpy (x.T, x.reshape(...), x[...]), so the closed form "
                f"would keep the first call's values; use microtape's ops, which record ops on "
                f"data too (mt.transpose, mt.reshape, mt.getitem: mt.Tensor(x).T rather than "
                f"mt.Tensor(x.T)), or compile=False")
        base = getattr(base, "base", None)


def _outside(name: str, leaf: Any, current: Callable[[], np.ndarray] | None = None) -> Callable:
    """How to read an input f took from outside its arguments: as it is at each call.
    ``current``: what gives its value now, where that is not ``leaf.value``."""
    if not isinstance(leaf, Tensor):
        return lambda args: leaf
    shape, dtype = leaf.value.shape, leaf.value.dtype

    def read(args: tuple) -> np.ndarray:
        value = leaf.value if current is None else current()
        if value.shape != shape or value.dtype != dtype:
            raise ShapeError(
                f"compile=True: the Tensor {name!r}, which the function reads from outside its "
                f"arguments, now has shape {value.shape} and dtype {value.dtype}, but it was "
                f"traced with shape {shape} and dtype {dtype}; pass it as an argument")
        return value
    return read


def baked(nodes: list, traced: list, sources: dict) -> list[tuple]:
    """Places of arrays the closed form holds as constants: their values join the signature."""
    places = _places(traced, skip=sources)
    found = {places[id(x)] for node in nodes for x in _held(node) if id(x) in places}
    return sorted(found)


def masks(nodes: list, traced: list) -> list[tuple]:
    """Places of the boolean arrays the nodes index with: their counts of True values decide
    the shapes after the index, so they join the signature."""
    places = _places(traced)
    return sorted({places[id(m)] for m in index_masks(nodes) if id(m) in places})


def keyed(key: tuple, plan: tuple[tuple, tuple], args: tuple) -> tuple:
    """``key`` with the values of the arrays at ``plan[0]`` and the counts of True values
    of the boolean arrays at ``plan[1]``."""
    held, counted = plan
    return (key, plan, tuple(value_key(at(args, p)) for p in held),
            tuple(int(np.count_nonzero(at(args, p))) for p in counted))


def count_checks(args: tuple, counted: list[tuple], refused: str, namespace: dict) -> list[str]:
    """Lines for ``guard``'s code that run ``refused`` unless each boolean index at the
    top-level places ``counted`` has as many True values as in ``args`` (``n{i}``)."""
    lines = []
    for (i,) in counted:
        namespace["count_nonzero"] = np.count_nonzero
        namespace[f"n{i}"] = int(np.count_nonzero(args[i]))
        lines += [f"if count_nonzero(a{i}) != n{i}:", f"    {refused}"]
    return lines


def _held(node: Any) -> list:
    """What a node's closed form writes as a constant: params, and lists or dicts among its inputs.

    Arrays, Tensors and the arrays of a tuple index are arguments of the closed form.
    """
    held = list(_flat(list(node.params.values())))
    for x in node.inputs:
        if _container(x) and not isinstance(x, tuple):
            held.extend(_flat(x))
    return held


def _flat(x: Any):
    if _container(x):
        for v in (x.values() if type(x) is dict else x):
            yield from _flat(v)
    else:
        yield x


# -- the common call, checked and bound by code written for its signature ----------------------

_NUMBERS = frozenset((int, float, bool, str))  # arguments a signature holds by value


def guard(args: tuple, getters: list, refused: str, held: Sequence[int] = (),
          identities: Sequence[tuple[int, Tensor, bool]] = ()) -> tuple[list[str], str, dict] | None:
    """Code that runs the statement ``refused`` unless a call's arguments have the signature
    ``args`` have, and the closed form's inputs read from them: (lines, inputs, namespace).

    Written for calls of plain arrays, Tensors, numbers and strings, none of
    the Tensors passed twice (None for any other call): every check the cache
    key makes is then a type, a shape, a dtype or a value compared in place,
    with nothing built or hashed. A dtype compared by identity only makes the
    check stricter than the key's equality: such a call takes the general path.

    ``held``: places that must hold given Tensors, distinct ones, which the code
    reads from a tuple ``params`` in that order (an optimizer's parameters);
    ``a0 is p0`` then checks the type and that no other of them is passed there.

    ``identities``: (place, Tensor, whether the argument there must be it or must
    not), for the Tensors f read from outside its arguments (see
    ``Compiled._with_outside``).
    """
    namespace: dict[str, Any] = {"Tensor": Tensor, "ndarray": np.ndarray}
    mine = {i: k for k, i in enumerate(held)}
    found = _each_argument(args, mine, namespace)
    if found is None:
        return None
    types, checks, tensors = found
    if (len(set(id(args[i]) for i in tensors)) < len(tensors) or len(mine) < len(held)
            or not set(mine) <= set(tensors)):
        return None
    checks += _distinct(tensors, mine) + _identities(args, identities, namespace)
    unpacked = [_unpack("a", len(args), "args"), *([_unpack("p", len(held), "params")] if held else [])]
    lines = ["try:", *(f"    {line}" for line in unpacked),
             "except ValueError:  # another number of arguments",
             f"    {refused}",
             f"if not ({' and '.join(types + checks) or 'True'}):", f"    {refused}"]
    return lines, _inputs(getters, namespace), namespace


def _each_argument(args: tuple, mine: dict[int, int], namespace: dict) -> tuple | None:
    """(type checks, shape and dtype checks, places of Tensors) for ``guard``; None for an
    argument that is no array, Tensor, number, string or None. ``mine``: place -> k where
    the optimizer's parameter ``p{k}`` must be."""
    types, checks, tensors = [], [], []
    for i, a in enumerate(args):
        t = type(a)
        if t is Tensor or t is np.ndarray:
            array, name = (a.value, f"v{i}") if t is Tensor else (a, f"a{i}")
            namespace[f"s{i}"], namespace[f"d{i}"] = array.shape, array.dtype
            types.append(f"a{i} is p{mine[i]}" if i in mine else f"type(a{i}) is {t.__name__}")
            read = f"(v{i} := a{i}.value)" if t is Tensor else name  # once its type is known
            checks.append(f"{read}.shape == s{i} and {name}.dtype is d{i}")
            tensors += [i] if t is Tensor else []
        elif a is None:
            types.append(f"a{i} is None")
        elif t in _NUMBERS:
            namespace[f"c{i}"] = a
            types.append(_same_number(i, a, namespace))
        else:
            return None
    return types, checks, tensors


def _identities(args: tuple, identities: Sequence[tuple[int, Tensor, bool]],
                namespace: dict) -> list[str]:
    """Checks that each place holds, or does not hold, a Tensor f read from outside (``o{k}``)."""
    checks = []
    for k, (i, t, same) in enumerate(identities):
        if type(args[i]) is Tensor:  # an array there is never the Tensor
            namespace[f"o{k}"] = t
            checks.append(f"a{i} is o{k}" if same else f"a{i} is not o{k}")
    return checks


def _same_number(i: int, a: Any, namespace: dict) -> str:
    """The check that argument i is ``a`` (held as ``c{i}``), a number or a string, as the key
    tells them apart: by type and value, a zero by its sign too, and any NaN as one."""
    same = f"a{i} == c{i}"
    if type(a) is float and not a:  # the sign of a zero, which == does not see
        namespace["copysign"] = math.copysign
        same += f" and copysign(1.0, a{i}) == {math.copysign(1.0, a)}"
    elif type(a) is float and a != a:
        same = f"a{i} != a{i}"  # a NaN, which equals no NaN
    return f"type(a{i}) is {type(a).__name__} and {same}"


def _unpack(name: str, count: int, tuple_name: str) -> str:
    """``a0, a1 = args``: the tuple's items as numbered names (``() = args`` for none)."""
    if not count:
        return f"() = {tuple_name}"
    return ", ".join(f"{name}{i}" for i in range(count)) + "," * (count == 1) + f" = {tuple_name}"


def _inputs(getters: list, namespace: dict) -> str:
    """The closed form's inputs as the guard's names: an argument, a Tensor's value, a getter."""
    inputs = []
    for k, g in enumerate(getters):
        if type(g) is int or type(g) is _TensorAt:
            inputs.append(f"{'v' if type(g) is _TensorAt else 'a'}{g}")
        else:
            namespace[f"g{k}"] = g
            inputs.append(f"g{k}(args)")
    return ", ".join(inputs)


def _distinct(tensors: list[int], held: Container[int] = ()) -> list[str]:
    """Checks that no Tensor is passed twice: pairwise for a few, by a set of ids for more.
    Two ``held`` places need none: each is one of distinct given Tensors."""
    pairs = [(i, j) for n, i in enumerate(tensors) for j in tensors[n + 1:]
             if not (i in held and j in held)]
    if len(pairs) <= 15:
        return [f"a{i} is not a{j}" for i, j in pairs]
    ids = ", ".join(f"id(a{i})" for i in tensors)
    return [f"len({{{ids}}}) == {len(tensors)}"]
