-- A least-privilege MariaDB user for the service (run once as an administrator, after
-- changing the password):   mariadb -u root -p < sql/grants.sql
-- then:                     DATABASE_URL=mysql://orders_app:<password>@<host>:3306/orders
--
-- The user reaches only the service's own table. SELECT, INSERT, UPDATE and DELETE are what the
-- guest's statements need; CREATE lets the service apply sql/schema.sql at startup (CREATE TABLE
-- IF NOT EXISTS); DROP is what TRUNCATE needs, used only by /init with ORDERS_ALLOW_RESET on:
-- leave it out where resets are off. No FILE, PROCESS, SUPER or GRANT OPTION, and no other
-- schema. The host refuses other statements before they reach the server (README, "Limits").
CREATE DATABASE IF NOT EXISTS `orders` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;
CREATE USER IF NOT EXISTS 'orders_app'@'%' IDENTIFIED BY 'change-me';
GRANT SELECT, INSERT, UPDATE, DELETE, CREATE, DROP ON `orders`.`orders` TO 'orders_app'@'%';
