#!/usr/bin/env python3
"""Lists the public API of every library product and builds its DocC documentation.

    Scripts/public-api.py            rewrite Documentation/API.md from the symbol graphs
    Scripts/public-api.py --check    fail if API.md is out of date, a public symbol has no doc
                                     comment, or DocC reports a warning (CI runs this)

The symbol graphs come from `swift package dump-symbol-graph` and the documentation from `docc
convert --warnings-as-errors`; both ship with the toolchain, so no plugin package is needed. The
modules are the targets of the library products in Package.swift: what a user can import.
"""

import glob
import json
import os
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
API_FILE = os.path.join(ROOT, "Documentation", "API.md")
TYPE_KINDS = {
    "swift.struct": "struct",
    "swift.class": "class",
    "swift.enum": "enum",
    "swift.protocol": "protocol",
    "swift.typealias": "typealias",
    "swift.actor": "actor",
}
TOP_LEVEL_KINDS = {"swift.func": "func", "swift.var": "var"}


def run(arguments, **options):
    return subprocess.run(arguments, cwd=ROOT, check=True, text=True, **options)


def public_modules():
    package = json.loads(run(["swift", "package", "dump-package"], capture_output=True).stdout)
    modules = []
    for product in package["products"]:
        if "library" in product["type"]:
            for target in product["targets"]:
                if target not in modules:
                    modules.append(target)
    return modules


def symbol_graph_directory():
    output = run(
        ["swift", "package", "dump-symbol-graph", "--skip-synthesized-members"], capture_output=True
    ).stdout
    for line in output.splitlines():
        if line.startswith("Files written to "):
            return line[len("Files written to "):].strip()
    sys.exit("public-api: dump-symbol-graph did not say where it wrote the graphs:\n" + output)


def graphs_of(directory, module):
    names = glob.glob(os.path.join(directory, module + ".symbols.json"))
    names += glob.glob(os.path.join(directory, module + "@*.symbols.json"))
    return sorted(names)


def first_sentence(symbol):
    lines = [line["text"] for line in symbol.get("docComment", {}).get("lines", [])]
    paragraph = []
    for line in lines:
        if not line.strip():
            if paragraph:
                break
            continue
        paragraph.append(line.strip())
    text = " ".join(paragraph)
    end = text.find(". ")
    text = text if end < 0 else text[: end + 1]
    return text.replace("``", "`")


def declaration(symbol):
    return "".join(fragment["spelling"] for fragment in symbol.get("declarationFragments", [])).strip()


def source_order(symbol):
    """(file below Sources/, line): the order members are written in, the same on every machine."""
    location = symbol.get("location", {})
    uri = location.get("uri", "")
    file = uri[uri.find("/Sources/") + 1:] if "/Sources/" in uri else uri
    return (file, location.get("position", {}).get("line", 0), ".".join(symbol["pathComponents"]))


def describe(directory, module):
    """Returns (lines for API.md, undocumented public symbols).

    Each public type gets a heading with the first sentence of its documentation and a block with
    its declaration and those of its public members (in source order); members that a module adds
    to another module's type are listed under that type, marked as an extension. Top-level
    functions and variables come last."""
    types, members, top_level, undocumented = {}, {}, [], []
    for path in graphs_of(directory, module):
        extended = os.path.basename(path).split("@")[1].split(".")[0] if "@" in path else None
        for symbol in json.load(open(path))["symbols"]:
            if symbol.get("accessLevel") not in ("public", "open"):
                continue
            kind = symbol["kind"]["identifier"]
            components = symbol["pathComponents"]
            name = ".".join(components)
            if "docComment" not in symbol:
                undocumented.append(f"{module}: {kind.replace('swift.', '')} {name}")
            if kind in TYPE_KINDS:
                key = f"{name} (extends {extended})" if extended else name
                types[key] = (TYPE_KINDS[kind], symbol)
            elif len(components) == 1:
                top_level.append(symbol)
            else:
                parent = ".".join(components[:-1])
                key = f"{parent} (extends {extended})" if extended else parent
                members.setdefault(key, []).append(symbol)
    # Members of a type this module does not declare (an extension of another module's type).
    for key in members:
        if key not in types:
            types[key] = (None, None)
    lines = []
    for key in sorted(types, key=str.lower):
        label, symbol = types[key]
        heading = f"### {label} `{key}`" if label else f"### `{key}`"
        lines += [heading, ""]
        if symbol is not None and first_sentence(symbol):
            lines += [first_sentence(symbol), ""]
        block = [declaration(symbol)] if symbol is not None else []
        for member in sorted(members.get(key, []), key=source_order):
            # A protocol's default implementation repeats its requirement's declaration: once is enough.
            if declaration(member) not in block:
                block.append(declaration(member))
        if block:
            lines += ["```swift"] + block + ["```", ""]
    if top_level:
        lines += ["### Functions and variables", "", "```swift"]
        lines += [declaration(symbol) for symbol in sorted(top_level, key=source_order)]
        lines += ["```", ""]
    return lines, undocumented


def render(directory, modules):
    text = [
        "# Public API",
        "",
        "Every public type of each library product, with the first sentence of its documentation and",
        "the declarations of the type and its public members, in source order. Generated by",
        "`Scripts/public-api.py` from the compiler's symbol graphs; CI fails when this file is out of",
        "date or a public symbol has no doc comment. Everything else is `package` (shared with this",
        "package's tools, tests and fuzzers) or internal. The DocC catalogs have the full documentation.",
        "",
    ]
    undocumented = []
    for module in modules:
        lines, missing = describe(directory, module)
        undocumented += missing
        text += [f"## {module}", ""] + (lines or ["(no public types)", ""])
    return "\n".join(text).rstrip("\n") + "\n", undocumented


def build_docs(directory, modules):
    """Runs docc convert for every module with warnings as errors; returns the failures."""
    failures = []
    output_root = os.path.join(ROOT, ".build", "docs")
    for module in modules:
        graphs = os.path.join(output_root, "graphs", module)
        shutil.rmtree(graphs, ignore_errors=True)
        os.makedirs(graphs)
        for path in graphs_of(directory, module):
            shutil.copy(path, graphs)
        arguments = ["docc", "convert"]
        catalog = os.path.join(ROOT, "Sources", module, module + ".docc")
        if os.path.isdir(catalog):
            arguments.append(catalog)
        arguments += [
            "--additional-symbol-graph-dir", graphs,
            "--fallback-display-name", module,
            "--fallback-bundle-identifier", "swift-nbd-middleware." + module,
            "--output-path", os.path.join(output_root, module + ".doccarchive"),
            "--warnings-as-errors",
        ]
        result = subprocess.run(arguments, cwd=ROOT, text=True, capture_output=True)
        if result.returncode != 0:
            failures.append(f"docc {module}:\n{result.stdout}{result.stderr}")
        else:
            print(f"public-api: {module} documentation built with no warnings")
    return failures


def main():
    check = "--check" in sys.argv[1:]
    modules = public_modules()
    directory = symbol_graph_directory()
    text, undocumented = render(directory, modules)
    problems = []
    if check:
        current = open(API_FILE).read() if os.path.exists(API_FILE) else ""
        if current != text:
            problems.append("Documentation/API.md is out of date: run Scripts/public-api.py and commit it")
            diff = subprocess.run(
                ["diff", "-u", API_FILE, "-"], input=text, text=True, capture_output=True
            ).stdout
            problems.append(diff)
    else:
        with open(API_FILE, "w") as file:
            file.write(text)
        print(f"public-api: wrote {os.path.relpath(API_FILE, ROOT)}")
    if undocumented:
        problems.append("public symbols without a doc comment:\n  " + "\n  ".join(undocumented))
    problems += build_docs(directory, modules)
    if problems:
        print("\n".join(problems), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
