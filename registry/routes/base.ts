// GET /v2/  (end-1): the API version check. The version header is added to every response by the app.
import type { Ctx } from '../context.js';

export async function base(c: Ctx): Promise<Response> {
  return c.json({});
}
