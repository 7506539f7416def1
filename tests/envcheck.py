"""Static checks of the conda envs in ``envs/`` (used by tests/test_envs.py).

Nothing here creates an env or reaches a conda channel: the files are read as YAML, validated
against a JSON schema of conda's ``environment.yml`` format, compared with requirements.txt and
with what the rules' scripts import, found by reading the scripts' syntax trees.
"""

import ast
import functools
import importlib.metadata
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

PACKAGE = "mirsafety"  # the workflow's library: followed into, never looked up as a distribution

# Imported by every rule script without being installed by the env: Snakemake's script directive
# injects the ``snakemake`` object (and Snakemake itself runs outside the rule's env).
INJECTED = {"snakemake"}

# Imports only one engine's env carries: the generate rules run a model with `backend: vllm`
# in envs/vllm.yaml (common.smk's generation_env), so generate.yaml leaves vllm out although the
# rules' scripts reach it (lazily, in mirsafety.models.vllm_backend). Module -> the env with it.
ENGINE_IMPORTS = {"vllm": "vllm.yaml"}

# Pins of an env that cannot take requirements.txt's: vllm==0.33.0 requires torch==2.14.0 and
# torchvision==0.29.0, transformers<5.21.0 and (through numba==0.65.0) numpy<2.4; pip resolves
# them to these (`make vllm-contract` installs them). Env file name -> {distribution: version}.
ENV_PINS = {
    "vllm.yaml": {"vllm": "0.33.0", "torch": "2.14.0", "torchvision": "0.29.0",
                  "transformers": "5.20.2", "numpy": "2.3.5"},
}

# Pinned requirements an env installs next to a distribution its rules import, although no rule
# imports them: transformers reads tokenizer files with tokenizers, weights with safetensors
# (the tiny models' weight hashes are provenance) and downloads with huggingface_hub, so a
# transformers env pins all three at requirements.txt's versions instead of whatever the solver
# picks. Each must be a direct requirement of its distribution (tests/test_envs.py checks).
COMPANIONS = {"transformers": {"tokenizers", "safetensors", "huggingface-hub"}}

# Packages a GPU env installs that no rule imports because transformers imports them at run time:
# its fast image processors and its video processors (which the Qwen2-VL, InternVL, LLaVA-OneVision
# and GLM-4.1V processors insist on) use torchvision. Every env whose rules import torch gets them.
# They are not in requirements.txt, whose CPU torch cannot load torchvision's compiled ops (seen on
# the project's machines: "operator torchvision::nms does not exist"), so their pins live here.
GPU_RUNTIME_PINS = {"torchvision": "0.28.0"}  # the release made for torch 2.13.0

# Conda package names that differ from the pip distribution of the same project.
CONDA_TO_PIP = {"pytorch": "torch"}

# conda's environment.yml (conda/env/env.py: name, channels, dependencies, variables, prefix).
# A dependency is a conda match spec or the one ``pip:`` mapping of pip requirement strings.
_NAME = r"[A-Za-z0-9_][A-Za-z0-9_.+-]*"
_VERSION = r"[A-Za-z0-9_.*+!]+"
_OP = r"(?:==|>=|<=|!=|~=|>|<)"
MATCH_SPEC = (
    rf"^(?:{_NAME}::)?{_NAME}"  # optional channel::, then the package name
    rf"(?:(?:==?{_VERSION}(?:={_VERSION})?)"  # name=1.2, name==1.2, name=1.2=build*
    rf"|(?:{_OP}{_VERSION}(?:[,|]{_OP}?{_VERSION})*))?$"  # name>=1.2, name>=1.2,<2
)
PEP508_NAME = r"^[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?"
PIP_PINNED = re.compile(
    PEP508_NAME + r"(?:\[[A-Za-z0-9._,-]+\])?==[0-9][A-Za-z0-9.+!-]*$"
)

ENV_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "conda environment.yml",
    "type": "object",
    "additionalProperties": False,
    "required": ["dependencies"],
    "properties": {
        "name": {"type": "string", "minLength": 1},
        "prefix": {"type": "string", "minLength": 1},
        "channels": {
            "type": "array",
            "items": {"type": "string", "minLength": 1},
            "uniqueItems": True,
        },
        "variables": {
            "type": "object",
            "additionalProperties": {"type": ["string", "number", "boolean"]},
        },
        "dependencies": {
            "type": "array",
            "items": {
                "oneOf": [
                    {"type": "string", "pattern": MATCH_SPEC},
                    {"$ref": "#/$defs/pip"},
                ]
            },
            "contains": {"$ref": "#/$defs/pip"},
            "minContains": 0,
            "maxContains": 1,
        },
    },
    "$defs": {
        "pip": {
            "type": "object",
            "additionalProperties": False,
            "required": ["pip"],
            "properties": {
                "pip": {
                    "type": "array",
                    "minItems": 1,
                    "items": {"type": "string", "pattern": PEP508_NAME},
                }
            },
        }
    },
}


def normalize(name: str) -> str:
    """A distribution name as PEP 503 compares them: PyYAML, pyyaml and py_yaml are one."""
    return re.sub(r"[-_.]+", "-", name).lower()


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, except that a repeated mapping key is an error, not an overwrite."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_env(path) -> dict:
    return yaml.load(Path(path).read_text(), Loader=_UniqueKeyLoader)


def requirement_pins(path) -> dict[str, str]:
    """requirements.txt as {normalized name: version}; every line must be ``name==version``."""
    pins = {}
    for line in Path(path).read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            match = re.fullmatch(r"([A-Za-z0-9._-]+)==(\S+)", line)
            if not match:
                raise ValueError(f"{path}: {line!r} is not pinned as name==version")
            pins[normalize(match[1])] = match[2]
    return pins


@dataclass(frozen=True)
class Dependency:
    name: str  # normalized pip distribution name (conda names mapped through CONDA_TO_PIP)
    version: str | None  # the exact version pinned, if any
    spec: str  # as written in the env file
    source: str  # "conda" or "pip"


def conda_spec(spec: str) -> tuple[str, str | None, str | None]:
    """(name, exact version or None, build or None) of a conda match spec."""
    spec = spec.split("::")[-1]
    match = re.fullmatch(rf"({_NAME})(?:==?({_VERSION})(?:=({_VERSION}))?)?", spec)
    if match:
        return match[1], match[2], match[3]
    return re.match(_NAME, spec)[0], None, None


def env_dependencies(env: dict) -> list[Dependency]:
    deps = []
    for item in env.get("dependencies", []):
        if isinstance(item, dict):
            for spec in item.get("pip", []):
                name, _, version = spec.partition("==")
                deps.append(Dependency(normalize(name), version or None, spec, "pip"))
        else:
            name, version, _ = conda_spec(item)
            deps.append(
                Dependency(
                    normalize(CONDA_TO_PIP.get(name, name)), version, item, "conda"
                )
            )
    return deps


def pin_problems(env: dict, pins: dict[str, str], own: dict[str, str] | None = None) -> list[str]:
    """Pip entries not pinned ``==``, and entries (pip, or conda ones requirements.txt also pins)
    whose name is missing from requirements.txt or whose version differs from it; ``own`` (the
    env's ENV_PINS) takes precedence over both requirements.txt and GPU_RUNTIME_PINS."""
    problems = []
    own = own or {}
    for dep in env_dependencies(env):
        if dep.source == "pip" and not PIP_PINNED.match(dep.spec):
            problems.append(f"pip entry {dep.spec!r} is not pinned as name==version")
        elif dep.name in own:
            if dep.version != own[dep.name]:
                problems.append(f"{dep.spec!r} disagrees with envcheck.ENV_PINS ({own[dep.name]})")
        elif dep.name in GPU_RUNTIME_PINS:
            if dep.version != GPU_RUNTIME_PINS[dep.name]:
                problems.append(f"{dep.spec!r} disagrees with envcheck.GPU_RUNTIME_PINS")
        elif dep.source == "pip" and dep.name not in pins:
            problems.append(f"pip entry {dep.spec!r} is not in requirements.txt")
        elif dep.name in pins and dep.version != pins[dep.name]:
            problems.append(
                f"{dep.source} entry {dep.spec!r} disagrees with requirements.txt "
                f"({dep.name}=={pins[dep.name]})"
            )
    return problems


@dataclass(frozen=True)
class Rule:
    name: str
    smk: Path
    env: Path | None
    script: Path | None


def _directive(block: str, key: str) -> str | None:
    match = re.search(rf'^\s+{key}:\s*(?:\n\s*)?"([^"]+)"', block, re.MULTILINE)
    return match[1] if match else None


def _function_envs(block: str, rules_dir: Path) -> list[str]:
    """The envs a ``conda:`` given as a function (``conda: generation_env``) can return: the
    ``envs/*.yaml`` strings in that function's body, wherever in the rules it is defined."""
    match = re.search(r"^\s+conda:\s*\n?\s*([A-Za-z_]\w*)\s*$", block, re.MULTILINE)
    if not match:
        return []
    for smk in sorted(rules_dir.glob("*.smk")):
        body = re.search(rf"^def {match[1]}\(.*?(?=^\S)", smk.read_text(), re.DOTALL | re.M)
        if body:
            return re.findall(r'"([^"]*envs/[^"]+\.yaml)"', body[0])
    return []


def parse_rules(rules_dir) -> list[Rule]:
    """Every rule of the ``*.smk`` files with its ``conda:`` env and ``script:`` (both resolved
    against the rule file's folder, as Snakemake does); None where a rule has no such line. A
    rule whose env is chosen by a function appears once per env that function can return."""
    rules = []
    rules_dir = Path(rules_dir)
    for smk in sorted(rules_dir.glob("*.smk")):
        text = smk.read_text()
        heads = list(
            re.finditer(r"^(?:rule|checkpoint)\s+(\w+)\s*:", text, re.MULTILINE)
        )
        for head, after in zip(heads, [*heads[1:], None]):
            block = text[head.end() : after.start() if after else len(text)]
            script = _directive(block, "script")
            envs = [_directive(block, "conda")] if _directive(block, "conda") else []
            for env in envs or _function_envs(block, rules_dir) or [None]:
                rules.append(
                    Rule(
                        head[1],
                        smk,
                        (smk.parent / env).resolve() if env else None,
                        (smk.parent / script).resolve() if script else None,
                    )
                )
    return rules


@dataclass(frozen=True)
class Import:
    module: str  # top-level module name, e.g. "PIL"
    where: str  # file:line of the first import found


@dataclass
class _Module:
    """One parsed file: what runs when it is imported, its top-level definitions, and what each
    name bound by an import statement (anywhere in the file) refers to inside PACKAGE."""

    path: Path
    name: str | None  # dotted name; None for a rule script
    eager: list  # AST nodes evaluated at import time (not function bodies)
    units: dict  # top-level def / class name -> its node (bodies included)
    bindings: dict  # name -> [("module", dotted) | ("from", dotted, attr)]
    is_package: bool = False  # an __init__.py


def _eager_nodes(node, units: dict, top: bool = True):
    """The nodes of ``node`` evaluated when the module is imported; registers the top-level
    functions and classes in ``units``. A function's body runs only when it is called; a class
    body runs at import (its methods' bodies do not)."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
            if top:
                units[child.name] = child
            defaults = [d for d in child.args.kw_defaults if d is not None]
            for part in [*child.decorator_list, *child.args.defaults, *defaults]:
                yield from ast.walk(part)
        elif isinstance(child, ast.ClassDef):
            if top:
                units[child.name] = child
            yield child
            yield from _eager_nodes(child, units, top=False)
        else:
            yield child
            yield from _eager_nodes(child, units, top)


class ImportScan:
    """The third-party imports a rule script can execute: its own, and those of the PACKAGE code
    it reaches, followed name by name.

    Every import statement counts, also one inside a function (a lazily imported backend), but a
    function's imports count only when the function is reachable: referenced from the script or
    from module-level code of a module the script loads, or from the body of a reachable
    function or class (a class counts whole, all its methods). Importing a module runs its
    module-level code and its parent packages' ``__init__``; a reference to a PACKAGE module
    object reaches all of it; relative imports are resolved. So ``from mirsafety.core.records import
    read_jsonl`` does not make torch, imported inside ``records.software_versions``, a
    requirement of a rule that never calls it. The reachability is static and conservative (a
    name reached anywhere in a file counts, whichever scope binds it); it is blind only to
    ``importlib`` and ``__import__``, which tests/test_envs.py checks PACKAGE does not use.
    """

    def __init__(self, package_dir):
        self.package_dir = Path(package_dir)
        self.root = self.package_dir.parent
        self._parsed: dict[Path, _Module] = {}

    def module_file(self, dotted: str) -> Path | None:
        parts = dotted.split(".")
        if parts[0] != self.package_dir.name:
            return None
        base = self.root.joinpath(*parts)
        for candidate in (base.with_suffix(".py"), base / "__init__.py"):
            if candidate.is_file():
                return candidate.resolve()
        return None

    def _module_name(self, path: Path) -> tuple[str | None, bool]:
        try:
            parts = list(path.relative_to(self.root.resolve()).with_suffix("").parts)
        except ValueError:
            return None, False
        if not parts or parts[0] != self.package_dir.name:
            return None, False
        if parts[-1] == "__init__":
            return ".".join(parts[:-1]), True
        return ".".join(parts), False

    def _absolute(self, module: _Module, node: ast.ImportFrom, is_package: bool) -> str:
        if not node.level:
            return node.module or ""
        if module.name is None:
            raise ValueError(
                f"{module.path}:{node.lineno}: relative import outside a package"
            )
        package = module.name.split(".") if is_package else module.name.split(".")[:-1]
        package = package[: len(package) - (node.level - 1)]
        return ".".join([*package, *([node.module] if node.module else [])])

    def parse(self, path) -> _Module:
        path = Path(path).resolve()
        if path not in self._parsed:
            tree = ast.parse(path.read_text(), filename=str(path))
            name, is_package = self._module_name(path)
            units: dict = {}
            module = _Module(path, name, [], units, {}, is_package)
            module.eager = (
                list(_eager_nodes(tree, units)) if name else list(ast.walk(tree))
            )
            for node in ast.walk(tree):
                for bound, target in self._bindings(module, node):
                    module.bindings.setdefault(bound, []).append(target)
            self._parsed[path] = module
        return self._parsed[path]

    def _bindings(self, module: _Module, node):
        package = self.package_dir.name
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] != package:
                    continue
                if alias.asname:
                    yield alias.asname, ("module", alias.name)
                else:  # `import a.b.c` binds `a`; a.b.c's attributes are reached through it
                    parts = alias.name.split(".")
                    for n in range(1, len(parts) + 1):
                        yield parts[0], ("module", ".".join(parts[:n]))
        elif isinstance(node, ast.ImportFrom):
            base = self._absolute(module, node, module.is_package)
            if base.split(".")[0] == package:
                for alias in node.names:
                    yield alias.asname or alias.name, ("from", base, alias.name)

    def scan(self, script) -> dict[str, Import]:
        """{top-level module outside PACKAGE: the first place it is imported}."""
        return _Walk(self, Path(script)).found

    def modules(self, script) -> list[Path]:
        """The files the scan loads: the script and every PACKAGE module it imports."""
        return list(_Walk(self, Path(script)).loaded.values())


class _Walk:
    def __init__(self, scan: ImportScan, script: Path):
        self.scan = scan
        self.found: dict[str, Import] = {}
        self.loaded: dict[str, Path] = {}
        self.reached: set = set()
        self.resolved: set = set()
        script = scan.parse(script)
        self.loaded[str(script.path)] = script.path
        self._run(script, script.eager)

    def _where(self, module: _Module, line: int) -> str:
        root = self.scan.root.resolve()
        path = (
            module.path.relative_to(root)
            if module.path.is_relative_to(root)
            else module.path
        )
        return f"{path}:{line}"

    def _run(self, module: _Module, nodes) -> None:
        for node in nodes:
            if isinstance(node, ast.Import):
                for alias in node.names:
                    self._import(module, alias.name, node.lineno)
            elif isinstance(node, ast.ImportFrom):
                base = self.scan._absolute(module, node, module.is_package)
                self._import(module, base, node.lineno)
                for alias in node.names:
                    if self.scan.module_file(f"{base}.{alias.name}"):
                        self._load(f"{base}.{alias.name}")
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
                self._ref(module, node.id)

    def _import(self, module: _Module, dotted: str, line: int) -> None:
        top = dotted.split(".")[0]
        if top == self.scan.package_dir.name:
            self._load(dotted)
        elif top and top not in self.found:
            self.found[top] = Import(top, self._where(module, line))

    def _load(self, dotted: str) -> None:
        parts = dotted.split(".")
        for n in range(1, len(parts) + 1):  # a parent package's __init__ runs first
            name = ".".join(parts[:n])
            path = self.scan.module_file(name)
            if path is None or name in self.loaded:
                continue
            self.loaded[name] = path
            module = self.scan.parse(path)
            self._run(module, module.eager)

    def _reach(self, dotted: str, unit: str | None) -> None:
        """Reach one top-level definition of a module, or (unit None) all of them."""
        self._load(dotted)
        module = self.scan.parse(self.scan.module_file(dotted))
        for name in [unit] if unit else list(module.units):
            if (dotted, name) not in self.reached:
                self.reached.add((dotted, name))
                self._run(module, ast.walk(module.units[name]))

    def _ref(self, module: _Module, name: str) -> None:
        if (module.path, name) in self.resolved:
            return
        self.resolved.add((module.path, name))
        if name in module.units and module.name is not None:
            self._reach(module.name, name)
        for target in module.bindings.get(name, []):
            if target[0] == "module":
                if self.scan.module_file(target[1]):
                    self._reach(target[1], None)
                continue
            _, base, attr = target
            if self.scan.module_file(f"{base}.{attr}"):
                self._reach(f"{base}.{attr}", None)
            elif self.scan.module_file(base):
                self._load(base)
                self._ref(self.scan.parse(self.scan.module_file(base)), attr)


def dynamic_imports(package_dir) -> list[str]:
    """Places in the package that import by computed name (``importlib``, ``__import__``), which
    ImportScan cannot follow."""
    found = []
    for path in sorted(Path(package_dir).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            elif isinstance(node, ast.Name):
                names = [node.id]
            # importlib.metadata reads installed distributions' versions; it imports nothing
            if any(n.split(".")[0] in ("importlib", "__import__") and n != "importlib.metadata"
                   for n in names):
                found.append(f"{path.name}:{node.lineno}")
    return found


def third_party(
    imports: dict[str, Import], package: str = PACKAGE
) -> dict[str, Import]:
    """Drop the standard library, the package itself and what Snakemake injects."""
    skip = set(sys.stdlib_module_names) | INJECTED | {package}
    return {top: imp for top, imp in imports.items() if top not in skip}


@functools.cache
def _packages_distributions() -> dict:
    return importlib.metadata.packages_distributions()


def distributions(module: str) -> set[str]:
    """The distributions (normalized) that provide a top-level module: PIL -> pillow, yaml ->
    pyyaml. A module nothing installed provides (vllm here) stands for itself."""
    found = _packages_distributions().get(module)
    return {normalize(d) for d in found} if found else {normalize(module)}


def direct_requirements(distribution: str) -> set[str]:
    """The installed distribution's unconditional requirements (no extras), normalized."""
    try:
        requires = importlib.metadata.requires(distribution) or []
    except importlib.metadata.PackageNotFoundError:
        return set()
    return {
        normalize(re.match(r"[A-Za-z0-9._-]+", req)[0])
        for req in requires
        if not re.search(r"\bextra\s*==", req)
    }


def missing_imports(rule: Rule, env: dict, scan: ImportScan, repo: Path) -> list[str]:
    """One line per module the rule's script imports (transitively) that ``env`` lacks."""
    have = {dep.name for dep in env_dependencies(env)}
    problems = []
    for top, imp in sorted(third_party(scan.scan(rule.script)).items()):
        if _other_engines(top, rule):
            continue
        dists = distributions(top)
        if not dists & have:
            problems.append(
                f"rule {rule.name} (script {_rel(rule.script, repo)}) imports {top} "
                f"({imp.where}), distribution {'/'.join(sorted(dists))}, "
                f"but its env {_rel(rule.env, repo)} lacks it"
            )
    return problems


def imported_distributions(rules: list[Rule], scan: ImportScan) -> set[str]:
    """The distributions the rules' scripts import (other engines' imports left out)."""
    found = set()
    for rule in rules:
        for top in third_party(scan.scan(rule.script)):
            if not _other_engines(top, rule):
                found |= distributions(top)
    return found


def _other_engines(module: str, rule: Rule) -> bool:
    """True when ``module`` belongs to another engine's env than the one ``rule`` runs in."""
    return module in ENGINE_IMPORTS and (rule.env is None or rule.env.name != ENGINE_IMPORTS[module])


def exactness_problems(
    env_path: Path, env: dict, rules: list[Rule], scan: ImportScan
) -> list[str]:
    """An env's Python packages (pip entries, and conda ones with a pip name such as pytorch)
    must be what its rules import plus the COMPANIONS of those: one line per package beyond
    that, and per companion missing."""
    imported = imported_distributions(rules, scan)
    expected = set(imported)
    for dist in imported:
        expected |= COMPANIONS.get(dist, set())
    if "torch" in imported:
        expected |= set(GPU_RUNTIME_PINS)
    have = {
        dep.name: dep
        for dep in env_dependencies(env)
        if dep.source == "pip" or dep.name in CONDA_TO_PIP.values()
    }
    users = ", ".join(rule.name for rule in rules) or "no rule"
    problems = [
        f"{env_path.name} installs {dep.spec!r}, which none of its rules ({users}) imports "
        f"and which is no companion of what they import"
        for name, dep in sorted(have.items())
        if name not in expected
    ]
    problems += [
        f"{env_path.name} lacks {name}, the pinned companion of "
        f"{', '.join(sorted(d for d in imported if name in COMPANIONS.get(d, ())))}"
        for name in sorted(expected - imported - set(have) - set(GPU_RUNTIME_PINS))
    ]
    problems += [
        f"{env_path.name} lacks {name}, which transformers needs at run time on GPU hosts"
        for name in sorted(set(GPU_RUNTIME_PINS) & expected - set(have))
    ]
    return problems


def _rel(path: Path | None, repo: Path) -> str:
    if path is None:
        return "<none>"
    return str(path.relative_to(repo)) if path.is_relative_to(repo) else str(path)
