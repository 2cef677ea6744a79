// From the sidecar's `input_schema` (JSON Schema draft 2020-12, subschemas inlined, top level
// `type: object`) to what OpenCode needs.
//
// The choice (see README.md, "How tool arguments reach the model"): no zod. The schema is passed
// through as JSON Schema, untouched:
//  - `args` gets one plain JSON Schema object per property. OpenCode 1.18.33 accepts non-zod
//    values there, does not validate them, and builds `{type: object, properties, required: <every
//    key>}` from them;
//  - the `tool.definition` hook then replaces that with the sidecar's exact schema (so `required`,
//    `additionalProperties`, `oneOf`, descriptions, enums and ranges reach the model unchanged).
// Validation happens in the binary (serde + schemars): its -32602 errors, with the field path and
// the reason, are what the model reads when it gets an argument wrong.

export type JsonSchema = Record<string, unknown>;

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** A deep copy, so nothing OpenCode or another plugin does can alter our copy. */
export function cloneSchema<T>(schema: T): T {
  return JSON.parse(JSON.stringify(schema)) as T;
}

/**
 * The schema as the model should see it: the sidecar's, with `type: "object"` made explicit at the
 * top (providers require an object schema for function parameters).
 */
export function schemaForModel(input: unknown): JsonSchema {
  const schema = isObject(input) ? cloneSchema(input) : {};
  if (schema.type === undefined) schema.type = "object";
  if (schema.type === "object" && !isObject(schema.properties)) schema.properties = {};
  return schema;
}

/**
 * One JSON Schema per top-level property, for OpenCode's `args`. Properties that only appear in
 * `oneOf`/`anyOf`/`allOf` branches are included too (first definition wins).
 */
export function argsFromInputSchema(input: unknown): Record<string, JsonSchema | boolean> {
  const out: Record<string, JsonSchema | boolean> = {};
  const visit = (s: unknown, depth: number) => {
    if (!isObject(s) || depth > 3) return;
    if (isObject(s.properties)) {
      for (const [k, v] of Object.entries(s.properties)) {
        if (!(k in out) && (isObject(v) || typeof v === "boolean")) out[k] = cloneSchema(v);
      }
    }
    for (const key of ["allOf", "oneOf", "anyOf"]) {
      const branches = s[key];
      if (Array.isArray(branches)) for (const b of branches) visit(b, depth + 1);
    }
  };
  visit(input, 0);
  return out;
}
