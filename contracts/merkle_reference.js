#!/usr/bin/env node
// Reference share tree from OpenZeppelin's own @openzeppelin/merkle-tree (a devDependency),
// used by tests/ledger to check that secagg/ledger/merkle.py builds the identical tree.
//
//   echo '{"types": [...], "values": [[...], ...]}' | node merkle_reference.js
//   -> {"root": "0x..", "entries": [{"leaf": "0x..", "proof": ["0x..", ...]}, ...]}
"use strict";

const { StandardMerkleTree } = require("@openzeppelin/merkle-tree");

const input = JSON.parse(require("fs").readFileSync(0, "utf8"));
const tree = StandardMerkleTree.of(input.values, input.types);
const entries = input.values.map((_, i) => ({ leaf: tree.leafHash(input.values[i]), proof: tree.getProof(i) }));
process.stdout.write(JSON.stringify({ root: tree.root, entries }) + "\n");
