// Validate C2PA manifests in MP4 files with c2pa-ts, a TypeScript C2PA implementation that
// shares no code with c2pa-rs (which signs them), and print one JSON report per file.
//
//   node validate.mjs --anchors ROOT.pem FILE.mp4 [FILE.mp4 ...]
//
// Exit 0 when every file validates (claim signature, hard binding, chain to an anchor),
// 1 when any does not, 2 on bad usage.
import { X509Certificate } from 'node:crypto';
import * as fs from 'node:fs/promises';

import { BMFF } from '@trustnxt/c2pa-ts/asset';
import { SuperBox } from '@trustnxt/c2pa-ts/jumbf';
import { ManifestStore, ValidationResult } from '@trustnxt/c2pa-ts/manifest';

// c2pa-ts parses and hashes any ISO BMFF file but only admits HEIC/HEIF brands; our MP4s
// are brand isom (ffmpeg's default) and mp42/mp41 is what other muxers write.
for (const brand of ['isom', 'iso2', 'mp41', 'mp42']) BMFF.canReadBrands.add(brand);

const HARD_BINDING_MATCH = new Set(['assertion.bmffHash.match', 'assertion.dataHash.match']);
const MAX_CHAIN = 5;

function usage() {
    console.error('usage: node validate.mjs --anchors ROOT.pem FILE.mp4 [FILE.mp4 ...]');
    process.exit(2);
}

function splitPem(text) {
    return (text.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? []).map(
        (pem) => new X509Certificate(pem),
    );
}

// c2pa-ts checks the certificate profile and validity dates but has no trust list
// ("signingCredential.trusted" there means only that), so the chain to our anchor is
// checked here with Node's own X.509 code.
function chainsToAnchor(leaf, intermediates, anchors, at) {
    let current = leaf;
    const pool = [...intermediates];
    for (let depth = 0; depth < MAX_CHAIN; depth++) {
        for (const anchor of anchors) {
            if (anchor.ca && current.checkIssued(anchor) && current.verify(anchor.publicKey)) {
                return inValidity(anchor, at);
            }
        }
        const issuer = pool.find((c) => c.ca && current.checkIssued(c) && current.verify(c.publicKey));
        if (!issuer || !inValidity(issuer, at)) return false;
        pool.splice(pool.indexOf(issuer), 1);
        current = issuer;
    }
    return false;
}

function inValidity(cert, at) {
    return new Date(cert.validFrom) <= at && at <= new Date(cert.validTo);
}

function createdAction(manifest) {
    for (const assertion of manifest.assertions?.assertions ?? []) {
        for (const action of assertion.actions ?? []) {
            if (action.action === 'c2pa.created') return action;
        }
    }
    return undefined;
}

async function report(path, anchors) {
    const out = {
        file: path,
        manifestFound: false,
        activeManifest: null,
        claimSignatureValid: false,
        hardBindingValid: false,
        hardBinding: null,
        certificateProfileValid: false,
        trustedByAnchor: false,
        signer: null,
        digitalSourceType: null,
        valid: false,
        errors: [],
    };
    const buf = new Uint8Array(await fs.readFile(path));
    if (!BMFF.canRead(buf)) {
        out.errors.push({ code: 'asset.unreadable', explanation: 'not an ISO BMFF file c2pa-ts reads' });
        return out;
    }
    const asset = new BMFF(buf);
    const jumbf = asset.getManifestJUMBF();
    if (!jumbf) return out;
    out.manifestFound = true;
    let result;
    let manifest;
    try {
        const store = ManifestStore.read(SuperBox.fromBuffer(jumbf));
        manifest = store.getActiveManifest();
        result = await store.validate(asset);
    } catch (e) {
        result = ValidationResult.fromError(e);
    }
    const ok = (code) => result.statusEntries.some((s) => s.success && s.code === code);
    out.claimSignatureValid = ok('claimSignature.validated');
    out.certificateProfileValid = ok('signingCredential.trusted');
    const binding = result.statusEntries.find((s) => s.success && HARD_BINDING_MATCH.has(s.code));
    out.hardBinding = binding ? binding.url.split('/').pop() : null;
    out.errors = result.statusEntries
        .filter((s) => !s.success)
        .map(({ code, url, explanation }) => ({ code, url, explanation }));
    out.hardBindingValid =
        binding !== undefined && !out.errors.some((e) => /Hash\.mismatch|hardBindings/.test(e.code));
    if (manifest) {
        out.activeManifest = manifest.label ?? null;
        out.digitalSourceType = createdAction(manifest)?.digitalSourceType ?? null;
        const sig = manifest.signature?.signatureData;
        if (sig?.certificate) {
            const leaf = new X509Certificate(new Uint8Array(sig.certificate.rawData));
            const chain = sig.chainCertificates.map((c) => new X509Certificate(new Uint8Array(c.rawData)));
            out.signer = leaf.subject.replace(/\n/g, ', ');
            out.trustedByAnchor = chainsToAnchor(leaf, chain, anchors, new Date());
        }
    }
    if (!out.trustedByAnchor) {
        out.errors.push({ code: 'signingCredential.untrusted', explanation: 'no chain to a given anchor' });
    }
    out.valid = result.isValid && out.claimSignatureValid && out.hardBindingValid && out.trustedByAnchor;
    return out;
}

const args = process.argv.slice(2);
const at = args.indexOf('--anchors');
if (at < 0 || at + 1 >= args.length) usage();
const anchors = splitPem(await fs.readFile(args[at + 1], 'utf8'));
const files = args.filter((_, i) => i !== at && i !== at + 1);
if (files.length === 0 || anchors.length === 0) usage();
const reports = [];
for (const file of files) reports.push(await report(file, anchors));
console.log(JSON.stringify(reports, null, 2));
process.exit(reports.every((r) => r.valid) ? 0 : 1);
