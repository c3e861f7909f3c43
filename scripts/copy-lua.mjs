// Build step: the Redis Lua scripts are loaded at run time from dist/store/lua, beside the compiled store.
import { cpSync } from "node:fs";

cpSync("src/store/lua", "dist/store/lua", { recursive: true });
