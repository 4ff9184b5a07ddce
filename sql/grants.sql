-- Least privilege for the service, in two users (run once as an administrator, after the schema,
-- with your own passwords):
--     mariadb -u root -p orders < sql/schema.sql
--     mariadb -u root -p orders < sql/grants.sql
-- then run the service with
--     DATABASE_URL=mysql://orders_app:<password>@<host>:3306/orders
--     DATABASE_ADMIN_URL=mysql://orders_admin:<password>@<host>:3306/orders
--
-- orders_app runs the guest's statements: it can read and change the rows of the orders table
-- and nothing else (no other table or schema, no FILE, PROCESS, SUPER, CREATE, DROP or GRANT).
-- orders_admin is what the service itself uses for the schema (CREATE TABLE IF NOT EXISTS at
-- startup) and for /init's reset (TRUNCATE needs DROP) when ORDERS_ALLOW_RESET is on.
-- docker-compose.yml runs this file, with these demo passwords, when the database is created.
CREATE USER IF NOT EXISTS 'orders_app'@'%' IDENTIFIED BY 'change-me';
GRANT SELECT, INSERT, UPDATE, DELETE ON `orders`.`orders` TO 'orders_app'@'%';
CREATE USER IF NOT EXISTS 'orders_admin'@'%' IDENTIFIED BY 'change-me-too';
GRANT CREATE, DROP, ALTER, INDEX, SELECT ON `orders`.* TO 'orders_admin'@'%';
