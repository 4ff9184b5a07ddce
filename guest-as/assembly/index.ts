// The module: the kit's exports, over the order logic in guest.ts.
export { abi_version, alloc, dealloc, inbox, handle, resume, describe } from "./kit/abi";
