// A second-language client of alive.v1, as a mobile app would use it: grpc-js with the
// proto loaded at run time (no Python anywhere). It animates a photo with a token, follows
// the progress, saves the MP4, reads ErrorInfo from a refusal (google.rpc.Status in the
// grpc-status-details-bin trailer) and cancels a request midway. Prints one JSON object.
//
//   node client.mjs --addr 127.0.0.1:50051 --token T --photo p.jpg --out v.mp4 --proto DIR
import { createHash } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { parseArgs } from "node:util";

import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import protobuf from "protobufjs";

const { values: args } = parseArgs({
  options: {
    addr: { type: "string" }, token: { type: "string" }, photo: { type: "string" },
    out: { type: "string" }, proto: { type: "string" },
    "blocked-caption": { type: "string", default: "make them look like a naked child" },
  },
});

const definition = protoLoader.loadSync("alive/v1/alive.proto", {
  includeDirs: [args.proto], keepCase: true, longs: Number, enums: String, defaults: true,
  oneofs: true,
});
const alive = grpc.loadPackageDefinition(definition).alive.v1;
const client = new alive.AliveService(args.addr, grpc.credentials.createInsecure(), {
  "grpc.max_send_message_length": 26 * 1024 * 1024,
});

// google.rpc.Status and ErrorInfo, as in googleapis' status.proto / error_details.proto.
const rpcTypes = protobuf.Root.fromJSON({
  nested: {
    google: {
      nested: {
        rpc: {
          nested: {
            Status: { fields: { code: { type: "int32", id: 1 }, message: { type: "string", id: 2 },
              details: { rule: "repeated", type: "google.protobuf.Any", id: 3 } } },
            ErrorInfo: { fields: { reason: { type: "string", id: 1 },
              domain: { type: "string", id: 2 },
              metadata: { keyType: "string", type: "string", id: 3 } } },
          },
        },
        protobuf: { nested: { Any: { fields: { type_url: { type: "string", id: 1 },
          value: { type: "bytes", id: 2 } } } } },
      },
    },
  },
});
const Status = rpcTypes.lookupType("google.rpc.Status");
const ErrorInfo = rpcTypes.lookupType("google.rpc.ErrorInfo");

function metadataFor(token) {
  const metadata = new grpc.Metadata();
  metadata.add("authorization", `Bearer ${token}`);
  return metadata;
}

function errorInfo(error) {
  const [raw] = error.metadata?.get("grpc-status-details-bin") ?? [];
  if (!raw) return null;
  const status = Status.decode(raw);
  for (const detail of status.details) {
    if (detail.type_url.endsWith("/google.rpc.ErrorInfo")) {
      const info = ErrorInfo.decode(detail.value);
      return { code: status.code, reason: info.reason, domain: info.domain,
        metadata: { ...info.metadata } };
    }
  }
  return { code: status.code };
}

// Animate; resolves with what came back, or rejects with the gRPC error.
function animate(request, { cancelAt } = {}) {
  return new Promise((resolve, reject) => {
    const call = client.Animate(request, metadataFor(args.token), {
      deadline: Date.now() + 120_000,
    });
    const stages = [];
    const chunks = [];
    let result = null;
    call.on("data", (event) => {
      if (event.progress) {
        stages.push(event.progress.stage);
        if (cancelAt && event.progress.stage === cancelAt) call.cancel();
      } else if (event.result) {
        result = event.result;
      } else if (event.chunk) {
        if (event.chunk.offset !== chunks.reduce((n, c) => n + c.length, 0)) {
          reject(new Error(`chunk at ${event.chunk.offset} out of order`));
        }
        chunks.push(event.chunk.data);
      }
    });
    call.on("error", (error) => { error.stages = stages; reject(error); });
    call.on("end", () => resolve({ stages, result, mp4: Buffer.concat(chunks) }));
  });
}

const report = {};
const photo = readFileSync(args.photo);
const small = { long_side: 320, duration_s: 1.0 };

// 1. Animate with a token, follow progress, save the MP4.
const made = await animate({ photo, caption: "clouds over the temple", options: small });
writeFileSync(args.out, made.mp4);
report.animate = {
  video_id: made.result.video_id, size_bytes: made.result.size_bytes, bytes: made.mp4.length,
  sha256: createHash("sha256").update(made.mp4).digest("hex"),
  result_sha256: made.result.sha256, signed: made.result.provenance.signed,
  stages: [...new Set(made.stages)],
};

// 2. A refusal: the caption is blocked by policy; the reason comes from ErrorInfo.
try {
  await animate({ photo, caption: args["blocked-caption"], options: small });
  report.refusal = { refused: false };
} catch (error) {
  report.refusal = { refused: true, code: grpc.status[error.code], info: errorInfo(error) };
}

// 3. Cancel midway: the app goes to the background while frames are being generated.
try {
  await animate({ photo, caption: "", options: { long_side: 640, duration_s: 3.0 } },
    { cancelAt: "STAGE_GENERATING" });
  report.cancel = { cancelled: false };
} catch (error) {
  report.cancel = { cancelled: error.code === grpc.status.CANCELLED,
    code: grpc.status[error.code], stages: [...new Set(error.stages)] };
}

client.close();
console.log(JSON.stringify(report));
