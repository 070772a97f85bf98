#!/usr/bin/env node
// Compile contracts/src/*.sol with the pinned solc-js and write ABI + bytecode artifacts.
//
//   node compile.js                 writes ../secagg/ledger/artifacts/<Contract>.json
//   node compile.js --out DIR       writes to DIR instead (the Python test compares the two)
//   node compile.js --check         writes nothing; exits 1 if the committed artifacts differ
//
// The Python package loads only the committed artifacts, so it needs no Node at run time.
// Output is deterministic: fixed compiler (exact npm pin, checked below), fixed settings,
// source names relative to this folder (the equivalent of `solcjs --base-path .
// --include-path node_modules`), sorted keys, no timestamps.
"use strict";

const fs = require("fs");
const path = require("path");
const solc = require("solc");

const HERE = __dirname;
const SOURCES = ["src/SecAggLedger.sol", "src/SecAggRewardToken.sol"];
const CONTRACTS = ["SecAggLedger", "SecAggRewardToken"];
const SETTINGS = {
  optimizer: { enabled: true, runs: 200 },
  evmVersion: "cancun",
  metadata: { bytecodeHash: "ipfs" },
  outputSelection: { "*": { "*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"] } },
};

function pinnedSolcVersion() {
  const pkg = JSON.parse(fs.readFileSync(path.join(HERE, "package.json"), "utf8"));
  return pkg.devDependencies.solc;
}

function findImports(importPath) {
  // Base path first (our sources), then the include path (OpenZeppelin in node_modules).
  for (const root of [HERE, path.join(HERE, "node_modules")]) {
    const candidate = path.join(root, importPath);
    if (fs.existsSync(candidate)) return { contents: fs.readFileSync(candidate, "utf8") };
  }
  return { error: `import not found: ${importPath} (run \`npm ci\` in contracts/)` };
}

function sortKeys(value) {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (value && typeof value === "object") {
    return Object.fromEntries(
      Object.keys(value).sort().map((k) => [k, sortKeys(value[k])])
    );
  }
  return value;
}

function main() {
  const args = process.argv.slice(2);
  const outIndex = args.indexOf("--out");
  const outDir =
    outIndex >= 0 ? path.resolve(args[outIndex + 1]) : path.join(HERE, "..", "secagg", "ledger", "artifacts");

  const pinned = pinnedSolcVersion();
  const actual = solc.version();
  if (!actual.startsWith(pinned + "+")) {
    console.error(`solc ${actual} installed, package.json pins ${pinned}: run \`npm ci\` in contracts/`);
    process.exit(2);
  }

  const input = {
    language: "Solidity",
    sources: Object.fromEntries(
      SOURCES.map((s) => [s, { content: fs.readFileSync(path.join(HERE, s), "utf8") }])
    ),
    settings: SETTINGS,
  };
  const output = JSON.parse(solc.compile(JSON.stringify(input), { import: findImports }));
  const problems = output.errors || [];
  for (const p of problems) console.error(p.formattedMessage);
  if (problems.some((p) => p.severity === "error")) process.exit(1);

  const check = args.includes("--check");
  let stale = 0;
  if (!check) fs.mkdirSync(outDir, { recursive: true });
  for (const name of CONTRACTS) {
    const sourceName = SOURCES.find((s) => output.contracts[s] && output.contracts[s][name]);
    const compiled = output.contracts[sourceName][name];
    const artifact = {
      contractName: name,
      sourceName,
      compiler: { name: "solc", version: actual, settings: sortKeys({ ...SETTINGS, outputSelection: undefined }) },
      abi: compiled.abi,
      bytecode: "0x" + compiled.evm.bytecode.object,
      deployedBytecode: "0x" + compiled.evm.deployedBytecode.object,
    };
    const text = JSON.stringify(artifact, null, 2) + "\n";
    const target = path.join(outDir, `${name}.json`);
    if (check) {
      const same = fs.existsSync(target) && fs.readFileSync(target, "utf8") === text;
      if (!same) stale += 1;
      console.log(`${name}: ${same ? "up to date" : "STALE, run `node compile.js`"}`);
      continue;
    }
    fs.writeFileSync(target, text);
    const size = compiled.evm.deployedBytecode.object.length / 2;
    console.log(`${name}: ${size} bytes runtime -> ${path.relative(process.cwd(), target)}`);
  }
  if (stale) process.exit(1);
}

main();
