"""A small Task framework shaped like LSST's (``pex_config`` + ``pipe_base``), without LSST.

Code written against ``lsst.pipe.base.Task`` (a ``ConfigClass``, ``_DefaultName``,
``makeSubtask``, ``metadata``/``getFullMetadata``, ``Struct`` results) should run on calibreg
unchanged, so the names and behaviours follow LSST's where they are observable; everything
else is kept as small as possible. Differences worth knowing:

* Full task names are joined with ``":"`` (``flatNorm:assemble``), which is also the key
  pipe_base's ``getFullMetadata`` uses, so there is a single spelling.
* Loggers are named ``calibreg.task.<full name with "." for ":">`` so that configuring the
  ``calibreg`` logger reaches every task and subtasks propagate to their parent's logger.
* A configuration error is a `FieldValidationError`, which is both a ``ValueError`` (as
  pex_config's) and a `calibreg.errors.InputError`, so the CLI reports it in one line.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import logging
import numbers
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, ClassVar, TypeVar

from calibreg.errors import InputError

from .metadata import TaskMetadata

__all__ = [
    "ChoiceField",
    "Config",
    "ConfigurableField",
    "ConfigurableInstance",
    "Field",
    "FieldValidationError",
    "Struct",
    "Task",
    "timeMethod",
]

F = TypeVar("F", bound=Callable[..., Any])


# --------------------------------------------------------------------------- Struct


class Struct:
    """An attribute bag for results, like ``lsst.pipe.base.Struct``.

    Results are returned as named attributes so that callers can unpack what they need and a
    task can add outputs later without breaking them.

    Parameters
    ----------
    **kwargs
        The attributes. Names may not start with ``__`` nor shadow a method.

    Raises
    ------
    RuntimeError
        For a name that starts with ``__`` or is the name of a Struct method (as pipe_base).
    """

    def __init__(self, **kwargs: Any) -> None:
        for name, value in kwargs.items():
            self.__safeAdd(name, value)

    def __safeAdd(self, name: str, value: Any) -> None:
        if name.startswith("__") or hasattr(type(self), name):
            raise RuntimeError(
                f"Item name {name!r} invalid; must not begin with __ "
                "or be the name of a Struct method"
            )
        if name in self.__dict__:
            raise RuntimeError(f"Item {name!r} already exists")
        self.__dict__[name] = value

    def getDict(self) -> dict[str, Any]:
        """Return the attributes as a new dict (the values themselves are not copied)."""
        return dict(self.__dict__)

    def mergeItems(self, struct: Struct, *nameList: str) -> None:
        """Copy the named attributes of another struct into this one (names must be new).

        Parameters
        ----------
        struct : Struct
            Where the attributes come from.
        *nameList : str
            Names of the attributes to copy.

        Raises
        ------
        RuntimeError
            If this struct already has one of the names, or a name is not allowed (see
            `Struct`); attributes copied before it stay.
        AttributeError
            If ``struct`` has no attribute of one of the names.
        """
        for name in nameList:
            self.__safeAdd(name, getattr(struct, name))

    def copy(self) -> Struct:
        """Return a shallow copy: a new Struct holding the same values."""
        return Struct(**self.getDict())

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Struct):
            return NotImplemented
        return self.__dict__ == other.__dict__

    __hash__ = None  # type: ignore[assignment]

    def __len__(self) -> int:
        return len(self.__dict__)

    def __repr__(self) -> str:
        items = ", ".join(f"{k}={v!r}" for k, v in self.__dict__.items())
        return f"Struct({items})"


# --------------------------------------------------------------------------- config


class FieldValidationError(InputError, ValueError):
    """A config value of the wrong type, outside its choices, or failing a check.

    The message reads ``<Config class>: field '<name>': <reason>``, the form of any
    `~calibreg.errors.InputError`, with the config class in place of a file.

    Parameters
    ----------
    config : type or Config
        The config class, or an instance of it.
    field : str
        Name of the offending field.
    reason : str
        What is wrong with the value.
    """

    def __init__(self, config: type | object, field: str, reason: str) -> None:
        cls = config if isinstance(config, type) else type(config)
        super().__init__(cls.__name__, reason, field=field)


class Field:
    """A typed config field with a default, like ``lsst.pex.config.Field``.

    Assignment checks the type at once, so a wrong value fails where it is set, not deep
    inside a solve. ``int`` values are accepted for ``float`` fields (and stored as float);
    ``bool`` is never accepted for a number, as ``True`` for an iteration count is a mistake.

    Parameters
    ----------
    doc : str
        What the field means (shown in errors and ``help``).
    dtype : type
        ``bool``, ``int``, ``float`` or ``str``.
    default : object, optional
        Initial value; copied into every new config.
    optional : bool
        Whether ``None`` is an acceptable value at `Config.validate` time.
    check : callable, optional
        ``check(value) -> bool``, applied by `Config.validate` to non-None values.

    Raises
    ------
    TypeError
        For any other ``dtype``.
    FieldValidationError
        If ``default`` is not of type ``dtype``.
    """

    def __init__(
        self,
        doc: str,
        dtype: type,
        default: Any = None,
        optional: bool = False,
        check: Callable[[Any], bool] | None = None,
    ) -> None:
        if dtype not in (bool, int, float, str):
            raise TypeError(f"unsupported field dtype {dtype!r}")
        self.doc = doc
        self.dtype = dtype
        self.optional = optional
        self.check = check
        self.name = "<unnamed>"
        self.default = None if default is None else self._coerce(type, "default", default)

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def _coerce(self, owner: Any, name: str, value: Any) -> Any:
        if value is None:
            return None
        dtype = self.dtype
        if dtype is bool:
            ok = isinstance(value, bool) or (
                type(value).__module__ == "numpy" and type(value).__name__ == "bool"
            )
            if ok:
                return bool(value)
        elif dtype is int:
            if isinstance(value, numbers.Integral) and not isinstance(value, bool):
                return int(value)
        elif dtype is float:
            if isinstance(value, numbers.Real) and not isinstance(value, bool):
                return float(value)
        elif isinstance(value, str):
            return value
        raise FieldValidationError(
            owner,
            name,
            f"must be of type {dtype.__name__}, not {type(value).__name__} ({value!r})",
        )

    def __get__(self, instance: Config | None, owner: type) -> Any:
        if instance is None:
            return self
        return instance._values[self.name]

    def __set__(self, instance: Config, value: Any) -> None:
        instance._check_not_frozen(self.name)
        instance._values[self.name] = self._coerce(instance, self.name, value)

    def _validate(self, instance: Config) -> None:
        value = instance._values[self.name]
        if value is None:
            if not self.optional:
                raise FieldValidationError(instance, self.name, "is required (None given)")
            return
        if self.check is not None and not self.check(value):
            raise FieldValidationError(
                instance, self.name, f"value {value!r} fails its check: {self.doc}"
            )

    def _to_python(self, instance: Config) -> Any:
        return instance._values[self.name]

    def _initial(self) -> Any:
        return self.default


class ChoiceField(Field):
    """A field whose value must be one of ``allowed`` (``lsst.pex.config.ChoiceField``).

    The choice is enforced on assignment, so a typo such as ``level = "AMPS"`` fails at once
    with the list of valid choices.

    Parameters
    ----------
    doc : str
        What the field means.
    dtype : type
        ``bool``, ``int``, ``float`` or ``str``.
    allowed : mapping
        Allowed value → description of that choice.
    default : object, optional
        Initial value; must be one of ``allowed``.
    optional : bool
        Whether ``None`` is an acceptable value at `Config.validate` time.

    Raises
    ------
    ValueError
        If ``allowed`` is empty.
    FieldValidationError
        If ``default`` is not of type ``dtype`` or not among ``allowed``.
    """

    def __init__(
        self,
        doc: str,
        dtype: type,
        allowed: Mapping[Any, str],
        default: Any = None,
        optional: bool = False,
    ) -> None:
        self.allowed = dict(allowed)
        if not self.allowed:
            raise ValueError("a ChoiceField needs at least one allowed value")
        super().__init__(doc, dtype, default=default, optional=optional)
        if self.default is not None and self.default not in self.allowed:
            raise ValueError(f"default {self.default!r} is not among {list(self.allowed)}")

    def _coerce(self, owner: Any, name: str, value: Any) -> Any:
        value = super()._coerce(owner, name, value)
        if value is not None and value not in self.allowed:
            raise FieldValidationError(
                owner,
                name,
                f"{value!r} is not allowed; choose one of "
                f"{', '.join(repr(a) for a in self.allowed)}",
            )
        return value


class ConfigurableInstance:
    """The value of a `ConfigurableField`: a subtask's target class and its config.

    Attribute access falls through to the subtask config, as in pex_config, so
    ``config.solve.someField = 1`` works. Made by `ConfigurableField`, not by hand.

    Parameters
    ----------
    target : type of Task
        The subtask class.
    value : Config
        Its config.
    """

    def __init__(self, target: type[Task], value: Config) -> None:
        object.__setattr__(self, "_target", target)
        object.__setattr__(self, "_value", value)

    @property
    def target(self) -> type[Task]:
        """The task class `apply` builds."""
        return self._target

    @property
    def value(self) -> Config:
        """The subtask's config."""
        return self._value

    @property
    def ConfigClass(self) -> type[Config]:
        """The config class of the current target."""
        return type(self._value)

    def apply(self, *args: Any, **kwargs: Any) -> Task:
        """Construct the target task with this config.

        Parameters
        ----------
        *args, **kwargs
            Passed to the task's constructor (``name=``, ``parentTask=``...), together with
            ``config=`` this slot's config.

        Returns
        -------
        Task
        """
        return self._target(*args, config=self._value, **kwargs)

    def retarget(self, target: type[Task], ConfigClass: type[Config] | None = None) -> None:
        """Use another task class (and its config class) for this subtask.

        The slot gets a fresh default config of the new class: overrides made for the old
        target do not carry over, as they may not even be fields of the new one.

        Parameters
        ----------
        target : type of Task
            The new subtask class.
        ConfigClass : type of Config, optional
            Its config class; default ``target.ConfigClass``.

        Raises
        ------
        FieldValidationError
            If the config is frozen.
        """
        if self._value._frozen:
            raise FieldValidationError(self._value, "target", "cannot retarget a frozen config")
        cls = ConfigClass or target.ConfigClass
        object.__setattr__(self, "_target", target)
        object.__setattr__(self, "_value", cls())

    def __getattr__(self, name: str) -> Any:
        return getattr(self._value, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._value, name, value)

    def __repr__(self) -> str:
        return f"ConfigurableInstance(target={self._target.__name__}, value={self._value!r})"


class ConfigurableField(Field):
    """A subtask slot in a config (``lsst.pex.config.ConfigurableField``).

    Holds the subtask class and its own config, so a pipeline can retarget a subtask or
    tune it from the parent's config, and the whole tree is persisted with `Config.toDict`.
    Assigning a config of the slot's class replaces the subtask config; assigning a mapping
    updates its fields.

    Parameters
    ----------
    doc : str
        What the subtask does.
    target : type of Task
        The default subtask class.
    ConfigClass : type of Config, optional
        Its config class; default ``target.ConfigClass``.
    """

    def __init__(
        self, doc: str, target: type[Task], ConfigClass: type[Config] | None = None
    ) -> None:
        self.doc = doc
        self.target = target
        self.ConfigClass = ConfigClass or target.ConfigClass
        self.optional = False
        self.check = None
        self.name = "<unnamed>"
        self.default = None

    def _initial(self) -> ConfigurableInstance:
        return ConfigurableInstance(self.target, self.ConfigClass())

    def __set__(self, instance: Config, value: Any) -> None:
        instance._check_not_frozen(self.name)
        slot: ConfigurableInstance = instance._values[self.name]
        if isinstance(value, ConfigurableInstance):
            value = value.value
        if isinstance(value, Config):
            if not isinstance(value, slot.ConfigClass):
                raise FieldValidationError(
                    instance,
                    self.name,
                    f"must be a {slot.ConfigClass.__name__}, not {type(value).__name__}",
                )
            object.__setattr__(slot, "_value", value)
        elif isinstance(value, Mapping):
            slot.value.update(**value)
        else:
            raise FieldValidationError(
                instance, self.name, f"must be a config or a mapping, not {type(value).__name__}"
            )

    def _validate(self, instance: Config) -> None:
        instance._values[self.name].value.validate()

    def _to_python(self, instance: Config) -> Any:
        return instance._values[self.name].value.toDict()


class Config:
    """Base of task configs: declared fields with defaults, checked on assignment.

    Unknown attribute names raise ``AttributeError`` (a misspelt override would otherwise be
    silently ignored); `validate` checks what single assignments cannot (required values,
    relations between fields); `freeze` makes a config read-only once a task has used it.

    Parameters
    ----------
    **kwargs
        Field values overriding the defaults (applied after `setDefaults`).
    """

    _fields: ClassVar[dict[str, Field]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        fields: dict[str, Field] = {}
        for klass in reversed(cls.__mro__):
            for name, attr in vars(klass).items():
                if isinstance(attr, Field):
                    fields[name] = attr
        cls._fields = fields

    def __init__(self, **kwargs: Any) -> None:
        object.__setattr__(self, "_frozen", False)
        object.__setattr__(self, "_values", {n: f._initial() for n, f in self._fields.items()})
        self.setDefaults()
        self.update(**kwargs)

    def setDefaults(self) -> None:
        """Override to change defaults (including subtask configs) in a subclass.

        Called by the constructor after the field defaults are set and before its keyword
        overrides, as in pex_config.
        """

    def update(self, **kwargs: Any) -> None:
        """Set several fields at once (each checked as a single assignment).

        Parameters
        ----------
        **kwargs
            Field name → value; a subtask field takes a config or a mapping of its fields.

        Raises
        ------
        AttributeError
            For a name that is not a field.
        FieldValidationError
            For a value of the wrong type or outside its choices, or a frozen config. Fields
            set before the failing one keep their new values.
        """
        for name, value in kwargs.items():
            setattr(self, name, value)

    @classmethod
    def fromDict(cls, data: Mapping[str, Any]) -> Config:
        """Rebuild a config from `toDict` output (e.g. a stored version's config).

        Subtask targets are not part of that output: subtask configs are rebuilt on the
        config class the field declares.

        Parameters
        ----------
        data : mapping
            Field name → value, nested mappings for subtask configs.

        Returns
        -------
        Config
            A new, unfrozen instance of ``cls``.

        Raises
        ------
        AttributeError
            For a name that is not a field.
        FieldValidationError
            For a value of the wrong type or outside its choices.
        """
        return cls(**dict(data))

    def __setattr__(self, name: str, value: Any) -> None:
        if name.startswith("_"):
            object.__setattr__(self, name, value)
            return
        if name not in self._fields:
            raise AttributeError(
                f"{type(self).__name__} has no field {name!r}; fields are "
                f"{', '.join(self._fields) or '(none)'}"
            )
        super().__setattr__(name, value)

    def _check_not_frozen(self, name: str) -> None:
        if self._frozen:
            raise FieldValidationError(self, name, "cannot modify a frozen config")

    def validate(self) -> None:
        """Check every field and the relations between fields.

        Raises
        ------
        FieldValidationError
            Naming the config class, the field and the reason.
        """
        for field in self._fields.values():
            field._validate(self)

    def freeze(self) -> None:
        """Make this config (and its subtask configs) read-only."""
        for name, field in self._fields.items():
            if isinstance(field, ConfigurableField):
                self._values[name].value.freeze()
        object.__setattr__(self, "_frozen", True)

    def toDict(self) -> dict[str, Any]:
        """Return field name → value (subtask configs as nested dicts): what a version stores."""
        return {name: f._to_python(self) for name, f in self._fields.items()}

    def names(self) -> list[str]:
        """Return the field names, in declaration order."""
        return list(self._fields)

    def keys(self) -> list[str]:
        """Return the field names, in declaration order (as `names`, for mapping-like use)."""
        return self.names()

    def items(self) -> list[tuple[str, Any]]:
        """Return ``(name, value)`` pairs in declaration order.

        A subtask field's value is its `ConfigurableInstance`, not a dict (see `toDict`).
        """
        return [(n, getattr(self, n)) for n in self._fields]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Config):
            return NotImplemented
        return type(self) is type(other) and self.toDict() == other.toDict()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.toDict().items())})"


# --------------------------------------------------------------------------- timing


def _rusage() -> dict[str, float | int]:
    try:
        import resource
    except ImportError:  # not on Windows
        return {}
    ru = resource.getrusage(resource.RUSAGE_SELF)
    # ru_maxrss is KiB on Linux, bytes on macOS; LSST records bytes.
    maxrss = ru.ru_maxrss if sys.platform == "darwin" else ru.ru_maxrss * 1024
    return {
        "UserTime": float(ru.ru_utime),
        "SystemTime": float(ru.ru_stime),
        "MaxResidentSetSize": int(maxrss),
    }


def _record(metadata: TaskMetadata, prefix: str) -> None:
    """Append a time/resource snapshot under ``prefix`` (as ``lsst.utils.timer.logInfo``)."""
    metadata.add(f"{prefix}Utc", dt.datetime.now(dt.UTC).isoformat())
    metadata.add(f"{prefix}CpuTime", time.process_time())
    for key, value in _rusage().items():
        metadata.add(f"{prefix}{key}", value)


def timeMethod(func: F) -> F:
    """Decorate a Task method to time it into the task's metadata (``lsst.utils.timer``).

    Records ``{method}StartUtc``/``...CpuTime``... before the call and ``{method}End...`` after
    it, even when it raises, so a failed run still says how long it ran.
    """

    @functools.wraps(func)
    def wrapper(self: Task, *args: Any, **kwargs: Any) -> Any:
        with self.timer(func.__name__):
            return func(self, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


# --------------------------------------------------------------------------- Task


class Task:
    """Base of calibreg tasks, like ``lsst.pipe.base.Task``.

    Parameters
    ----------
    config : Config, optional
        The task's config; default ``ConfigClass()`` (or, for a subtask, the parent's config
        entry of the same name).
    name : str, optional
        The task's name; default ``_DefaultName``. Required for a subtask.
    parentTask : Task, optional
        The task this one is a subtask of; full names and the task dictionary are shared
        with it.

    Raises
    ------
    RuntimeError
        If a subtask has no name, a top-level task has neither ``name`` nor
        ``_DefaultName``, or the name contains ``:`` or ``.`` (the separators of full names
        and logger names).
    TypeError
        If ``config`` is not a `Config`.
    """

    ConfigClass: ClassVar[type[Config]] = Config
    _DefaultName: ClassVar[str | None] = None
    #: Subtasks that are not declared in the config: name → task class.
    _subtasks: ClassVar[Mapping[str, type[Task]]] = {}
    canMultiprocess: ClassVar[bool] = True

    def __init__(
        self,
        config: Config | None = None,
        name: str | None = None,
        parentTask: Task | None = None,
    ) -> None:
        if parentTask is not None:
            if name is None:
                raise RuntimeError("a subtask needs a name")
            if config is None:
                slot = getattr(parentTask.config, name, None)
                config = slot.value if isinstance(slot, ConfigurableInstance) else slot
            self._fullName = f"{parentTask.getFullName()}:{name}"
            self._taskDict = parentTask._taskDict
            self._parentTask: Task | None = parentTask
            logger = parentTask.log.getChild(name)
        else:
            if name is None:
                name = self._DefaultName
                if name is None:
                    raise RuntimeError(
                        f"{type(self).__name__} has no _DefaultName: give the task a name"
                    )
            self._fullName = name
            self._taskDict = {}
            self._parentTask = None
            logger = logging.getLogger("calibreg.task").getChild(name)
        if ":" in name or "." in name:
            raise RuntimeError(f"task name {name!r} may not contain ':' or '.'")
        if config is None:
            config = self.ConfigClass()
        elif not isinstance(config, Config):
            raise TypeError(f"config must be a Config, not {type(config).__name__}")
        self._name = name
        self.config = config
        self.log = logger
        self.metadata = TaskMetadata()
        self._taskDict[self._fullName] = self

    # ------------------------------------------------------------------ names and tree
    def getName(self) -> str:
        """Return the task's own name (``assemble``)."""
        return self._name

    def getFullName(self) -> str:
        """Return the task's name with its parents' (``flatNorm:assemble``)."""
        return self._fullName

    def getTaskDict(self) -> dict[str, Task]:
        """Return full name → task for every task of the tree (a shallow copy)."""
        return dict(self._taskDict)

    def makeSubtask(self, name: str, **kwargs: Any) -> Task:
        """Construct subtask ``name`` from the config (or ``_subtasks``) and set it as attribute.

        Parameters
        ----------
        name : str
            The subtask's name: a `ConfigurableField` of the config, or a key of
            ``_subtasks``. It becomes the attribute and the last part of the full name.
        **kwargs
            Passed to the subtask's constructor.

        Returns
        -------
        Task
            The subtask (also set as ``self.<name>``).

        Raises
        ------
        AttributeError
            If neither the config nor ``_subtasks`` declares the subtask.
        """
        slot = getattr(self.config, name, None) if name in self.config._fields else None
        if isinstance(slot, ConfigurableInstance):
            subtask = slot.apply(name=name, parentTask=self, **kwargs)
        elif name in self._subtasks:
            subtask = self._subtasks[name](name=name, parentTask=self, **kwargs)
        else:
            raise AttributeError(
                f"{type(self).__name__} declares no subtask {name!r} (neither a "
                "ConfigurableField of its config nor an entry of _subtasks)"
            )
        setattr(self, name, subtask)
        return subtask

    # ------------------------------------------------------------------ metadata
    def emptyMetadata(self) -> None:
        """Clear the metadata of every task in the tree (before a new run)."""
        for task in self._taskDict.values():
            task.metadata = TaskMetadata()

    def getFullMetadata(self) -> TaskMetadata:
        """Return a snapshot of every task's metadata, keyed by full name (``flatNorm:solve``).

        A copy, so the document a version stores cannot change after it was captured.
        """
        full = TaskMetadata()
        for full_name, task in self._taskDict.items():
            full.metadata[full_name] = task.metadata.copy()
        return full

    @contextlib.contextmanager
    def timer(self, name: str, logLevel: int = logging.DEBUG) -> Iterator[None]:
        """Time a block into this task's metadata, as ``lsst.utils.timer`` does.

        Appends ``{name}StartUtc``, ``{name}StartCpuTime`` (process CPU seconds),
        ``{name}StartUserTime``/``SystemTime``/``MaxResidentSetSize`` where the platform has
        them, the same with ``End``, and ``{name}Duration`` (wall-clock seconds). All are
        arrays, so a block run twice keeps both timings. The end is recorded even when the
        block raises.

        Parameters
        ----------
        name : str
            Prefix of the metadata names, e.g. the method name.
        logLevel : int
            `logging` level of the ``"<name> took <s> s"`` message on the task's logger.
        """
        _record(self.metadata, f"{name}Start")
        start = time.perf_counter()
        try:
            yield
        finally:
            elapsed = time.perf_counter() - start
            _record(self.metadata, f"{name}End")
            self.metadata.add(f"{name}Duration", elapsed)
            self.log.log(logLevel, "%s took %.6f s", name, elapsed)

    # ------------------------------------------------------------------ pipe_base API
    def getResourceConfig(self) -> None:
        """Return None: calibreg tasks have no resource configuration (pipe_base compatibility)."""

    def getSchemaCatalogs(self) -> dict[str, Any]:
        """Return an empty dict: calibreg tasks write no catalogs (pipe_base compatibility)."""
        return {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self._fullName!r})"
