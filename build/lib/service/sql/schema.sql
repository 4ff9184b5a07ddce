-- The orders table: one source of truth for the schema, applied at startup and by /init.
-- Idempotent: it creates what is missing and never drops data.
-- Money is DECIMAL so that 19.99 stays 19.99 (a FLOAT column would store 19.9899997711182).
CREATE TABLE IF NOT EXISTS orders (
    order_id INT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    product_id INT NOT NULL,
    quantity INT NOT NULL,
    amount DECIMAL(12,2) NOT NULL,
    shipping DECIMAL(12,2) NOT NULL,
    tax DECIMAL(12,2) NOT NULL,
    shipping_address VARCHAR(256) NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
